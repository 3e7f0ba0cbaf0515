"""The ``vaelab`` command line: parses arguments and hands a config to a pipeline's ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vaecore.errors import VaelabError

# Subcommand modules; each defines add_parser(subparsers) that sets ``func`` on its parser.
_COMMAND_MODULES = ("pipelines.vae", "pipelines.fewlabel", "pipelines.chem", "pipelines.molopt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaelab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # subcommand not built yet
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (VaelabError, ValueError, FileNotFoundError) as err:
        # Bad input ends with one clear line, not a traceback.
        print(f"vaelab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vaelab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
