"""``finsim scenarios``: list the named scenarios with their descriptions."""

from __future__ import annotations

import argparse
import textwrap

from finsim_mesa.scenarios import list_scenarios


def cmd_scenarios(args: argparse.Namespace) -> int:
    for name, sc in list_scenarios().items():
        print(name)
        print(textwrap.indent(textwrap.fill(sc.description, 76), "    "))
        if args.verbose:
            fields = type(sc).model_fields
            for k, v in sc.model_dump(exclude={"name", "description"}).items():
                print(f"      {k} = {v}  ({fields[k].description})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    sc = sub.add_parser("scenarios", help="list the scenarios")
    sc.add_argument("-v", "--verbose", action="store_true", help="show parameters too")
    sc.set_defaults(func=cmd_scenarios)
