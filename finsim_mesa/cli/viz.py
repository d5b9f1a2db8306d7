"""``finsim viz``: serve the Solara app (network, charts, shocks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finsim_mesa.errors import FinsimError


def cmd_viz(args: argparse.Namespace) -> int:
    """Serve the Solara app (``solara run finsim_mesa.viz.app``)."""
    import shutil
    import subprocess

    solara = shutil.which("solara") or str(Path(sys.executable).with_name("solara"))
    if not Path(solara).exists():
        raise FinsimError("the solara command is not installed (pip install solara)")
    cmd = [solara, "run", "finsim_mesa.viz.app", "--host", args.host, "--port", str(args.port)]
    if not args.open:
        cmd.append("--no-open")
    print(f"serving the finsim-mesa app on http://{args.host}:{args.port}/ (Ctrl-C to stop)")
    return subprocess.call(cmd)


def add_parser(sub: argparse._SubParsersAction) -> None:
    vz = sub.add_parser("viz", help="serve the Solara app (network, charts, shocks)")
    vz.add_argument("--host", default="127.0.0.1")
    vz.add_argument("--port", type=int, default=8765)
    vz.add_argument("--open", action="store_true", help="open a browser")
    vz.set_defaults(func=cmd_viz)
