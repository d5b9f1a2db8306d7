"""Reference tables of the interfaces, generated from the code: the ``finsim``
command line (from its ``argparse`` parser) and the REST API (from the service's
OpenAPI document). ``reference_tables.TABLES`` lists them with the others."""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from md_tables import cell as _cell
from md_tables import table as _table


def _option_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    fmt = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        if action.metavar and action.option_strings:
            flags += f" `{action.metavar}`"
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or \
            isinstance(action, argparse._StoreTrueAction) else f"`{default}`"
        text = fmt._expand_help(action) if action.help else ""
        rows.append([flags, shown, text])
    return rows


def table_cli() -> str:
    """Every ``finsim`` subcommand: usage, description and options, from argparse."""
    from finsim_mesa.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    out = []
    for name in COMMANDS:
        p = sub.choices[name]
        usage = p.format_usage().replace("usage: ", "").strip()
        desc = p.description or helps.get(name) or ""
        rows = _option_rows(p)
        body = f"## `finsim {name}`\n\n{_cell(helps.get(name, ''))}.\n\n" if helps.get(name) \
            else f"## `finsim {name}`\n\n"
        if desc and desc != helps.get(name):
            body += f"{desc}\n\n"
        body += f"```text\n{usage}\n```\n\n"
        body += _table(["option", "default", "meaning"], rows) if rows else "No options."
        if p.epilog:
            body += f"\n\n```text\n{p.epilog.strip()}\n```"
        out.append(body)
    return "\n\n".join(out)


# ------------------------------------------------------------------- REST API
def openapi_schema() -> dict[str, Any]:
    """The REST service's OpenAPI document, from the application itself."""
    from finsim_mesa.api.app import create_app

    with tempfile.TemporaryDirectory() as models:
        return create_app(models_dir=models).openapi()


def table_rest_api(schema: dict[str, Any] | None = None) -> str:
    """The endpoints, grouped by tag: method, path, summary, query parameters."""
    schema = schema or openapi_schema()
    by_tag: dict[str, list[list[str]]] = {}
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            tag = (op.get("tags") or ["other"])[0]
            params = ", ".join(f"`{p['name']}`" for p in op.get("parameters", [])
                               if p.get("in") == "query")
            body = "JSON body" if "requestBody" in op else ""
            extra = "; ".join(x for x in (params and f"query: {params}", body) if x)
            what = (op.get("description") or op.get("summary", "")).split("\n\n")[0]
            by_tag.setdefault(tag, []).append([f"`{method.upper()}`", f"`{path}`",
                                               what.replace("``", "`"), extra])
    out = []
    for tag, rows in by_tag.items():
        out.append(f"### {tag}\n\n" + _table(["method", "path", "what it does", "input"], rows))
    return "\n\n".join(out)

