"""``finsim config``: write the default configuration as YAML, every parameter
documented."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finsim_mesa.cli.common import parse_set
from finsim_mesa.config import make_config
from finsim_mesa.files import atomic_write, check_writable


def cmd_config(args: argparse.Namespace) -> int:
    cfg = make_config(None, **parse_set(args.set or []))
    text = cfg.to_yaml()
    if args.output:
        check_writable(args.output, "-o")
        atomic_write(args.output, lambda p: Path(p).write_text(text))
        print(f"default configuration written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    cf = sub.add_parser("config", help="write the default configuration as YAML")
    cf.add_argument("-o", "--output", help="file to write (default: standard output)")
    cf.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a default")
    cf.set_defaults(func=cmd_config)
