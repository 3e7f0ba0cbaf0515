"""End-to-end runs. Each module exposes a frozen config dataclass, ``run(config, workdir)``
and ``add_parser(subparsers)``; :mod:`pipelines.cli` only parses arguments."""
