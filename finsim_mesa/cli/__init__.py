"""The ``finsim`` command line.

    finsim simulate [--scenario S --steps N --brain B --banks N --topology T --seed S
                     --config FILE --set KEY=VALUE ... --out results.csv]
    finsim simulate --compare          all scenarios side by side
    finsim simulate --exchanges 2 --ccps 1      with market infrastructure
    finsim simulate --compare-infrastructure    with vs without it
    finsim whatif --shock price_crash:0.2 --bank 3 --recommend
    finsim sweep --param scenario=normal,systemic --seeds 10 [--workers 2] --out s.csv
    finsim scenarios                   list scenarios with descriptions
    finsim config [-o FILE]            write the default config, every parameter documented

Errors in what the user gave (flags, config files, scenario files) print one
clear message and exit with status 2.

One module per subcommand: each defines ``add_parser(subparsers)``, which adds
its subparser with ``func=cmd_<name>`` as default; shared helpers are in
:mod:`finsim_mesa.cli.common`. A new command is a new module plus its name in
:data:`COMMANDS`. Heavy dependencies (torch, fastapi, solara, matplotlib) are
imported inside the ``cmd_*`` functions, so ``finsim --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from finsim_mesa.errors import FinsimError

__all__ = ["COMMANDS", "build_parser", "main"]

#: subcommand modules of this package, in the order ``finsim --help`` lists them
COMMANDS = ("simulate", "sweep", "whatif", "viz", "train", "evaluate", "serve", "scenarios",
            "config")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``finsim``."""
    p = argparse.ArgumentParser(prog="finsim", description="Financial contagion on Mesa.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``finsim`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FinsimError as err:
        print(f"finsim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130
