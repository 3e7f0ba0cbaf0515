"""The ``vaelab`` command line: parses arguments and hands a config to a pipeline's ``run``."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from vaecore.errors import FileWriteError, NonFiniteLossError, VaelabError, VaelabWarning
from vaecore.runtime import set_threads

# Subcommand modules and the command each adds; each defines add_parser(subparsers) that
# sets ``func`` on its parser, ``on_interrupt`` (args -> how to go on, or None) where an
# interrupted run can be continued, ``diverged_change`` (what to change, in its own
# options' terms) where a run trains, and ``memory_change`` (what to lower when memory
# runs out).
_COMMANDS = {"pipelines.vae": "vae", "pipelines.fewlabel": "fewlabel", "pipelines.chem": "chem",
             "pipelines.molopt": "molopt"}
# The options (dests) that name a file or directory. A shell expands ~ only at the start
# of an unquoted word: "--out=~/runs", or "~/runs" quoted in a script, reached the commands
# as is; --out made a directory named ~ in the current one, while --resume and ssvae's
# --data looked in the home directory, and chem's --data, --model and chem eval's DIR
# found nothing. Names without ~ (mnist, fixture, a model kind) pass unchanged.
PATH_OPTIONS = ("out", "resume", "data", "model", "init_data", "run_dir")


def _unavailable(command: str, package: str) -> Callable[[argparse.Namespace], None]:
    def fail(args: argparse.Namespace) -> None:
        raise VaelabError(f"the {command!r} command needs the Python package {package!r}, which is not "
                          f"installed here (pip install {package})")
    return fail


class _VersionAction(argparse.Action):
    """``--version``: vaelab's version and those of the libraries a run records in ``run.json``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the versions of vaelab and its libraries")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from vaecore.runtime import library_versions  # only when asked: it reads every package's metadata

        versions = library_versions()  # vaelab's own among them
        print("\n".join(f"{name} {version}" for name, version in versions.items()))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaelab", description=__doc__)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in _COMMANDS.items():
        try:
            importlib.import_module(name).add_parser(sub)
        except ModuleNotFoundError as err:
            if err.name == name:  # subcommand not built yet
                continue
            package = (err.name or "").split(".")[0]
            if not package or package in ("vaecore", "ssvae", "chemvae", "pipelines"):
                raise
            # A missing third-party package (rdkit for the chemistry commands, say) disables
            # only the commands that need it: `vaelab fewlabel` runs without rdkit.
            # The stub takes any arguments, --help too, to answer with that one error: no
            # command-line argument holds a NUL, so none reads as an option here.
            stub = sub.choices.get(command) or sub.add_parser(command, help=f"(unavailable: needs {package})",
                                                              add_help=False, prefix_chars="\0")
            stub.add_argument("rest", nargs=argparse.REMAINDER)
            stub.set_defaults(func=_unavailable(command, package))
    return parser


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation that failed: Python's, or torch's on any device."""
    text = str(err)
    return (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"  # torch's, CUDA's
            or "can't allocate memory" in text or "out of memory" in text)  # the CPU's, MPS's allocators


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM as Ctrl-C for the whole command, so that it ends with its word on how to go on.

    It is what ``kill`` and a batch scheduler's time limit send; it ended a command at once
    and without a word (a search's journal kept its outcomes, but nothing said so). The
    training loops take it as their first Ctrl-C (:func:`vaecore.runtime.interruptible`).
    """
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals are the host program's
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """vaelab's own warnings as one line naming the command, like its errors.

    Python's format added the file and line of the library code that warned and that
    line's source ("  generation = generation_metrics(samples, ..."), which told a user
    of the command line nothing. Only the printed text changes: code that records
    warnings (``warnings.catch_warnings``, pytest) still gets them whole.
    """
    default = warnings.formatwarning

    def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 line: str | None = None) -> str:
        if issubclass(category, VaelabWarning):
            return f"vaelab {command}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = default


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, name, os.path.expanduser(value))
    try:
        with _terminate_as_interrupt(), _one_line_warnings(args.command):
            set_threads(getattr(args, "threads", None))  # every command's --threads, set once here
            args.func(args)
    except NonFiniteLossError as err:
        # "non-finite loss (nan) at step 4" alone left the user to guess what to change. A
        # resume keeps the stored settings (and would diverge again): the advice is a new run.
        change = getattr(args, "diverged_change", None)
        how = f"; training diverged: start a new run with {change} (a resume keeps the stored settings)"
        print(f"vaelab {args.command}: error: {err}" + (how if change else ""), file=sys.stderr)
        return 2
    except (VaelabError, ValueError, OSError) as err:
        # Bad input ends with one clear line, not a traceback (OSError: a path that cannot
        # be read or written, which the message names).
        on_interrupt = getattr(args, "on_interrupt", None)
        # A run stopped by a full disk goes on from its last checkpoint, as after Ctrl-C.
        how = on_interrupt(args) if isinstance(err, FileWriteError) and on_interrupt is not None else None
        print(f"vaelab {args.command}: error: {err}" + (f"; once it can be written, {how}" if how else ""),
              file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:  # after VaelabError: CheckpointError is a RuntimeError
        if not _out_of_memory(err):
            raise
        # It ended in torch's traceback ("DefaultCPUAllocator: can't allocate memory", "CUDA
        # out of memory"), with nothing on the setting that decides it.
        said = (str(err).strip().splitlines() or [type(err).__name__])[0]
        said = said if len(said) <= 300 else said[:297] + "..."
        change = getattr(args, "memory_change", None)
        print(f"vaelab {args.command}: error: out of memory ({said})" + (f"; use {change}" if change else ""),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        # The run's own word (the epoch, its checkpoint) and the command that goes on from
        # there: "interrupted" alone left both out.
        said = str(err) or "interrupted"
        said = said if said.startswith("interrupted") else f"interrupted: {said}"
        on_interrupt = getattr(args, "on_interrupt", None)
        how = on_interrupt(args) if on_interrupt is not None else None
        print(f"vaelab {args.command}: {said}" + (f"; {how}" if how else ""), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
