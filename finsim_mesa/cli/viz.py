"""``finsim viz``: serve the Solara app (network, charts, shocks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finsim_mesa.errors import FinsimError


def cmd_viz(args: argparse.Namespace) -> int:
    """Serve the Solara app (``solara run finsim_mesa.viz.app``)."""
    import shutil

    solara = shutil.which("solara") or str(Path(sys.executable).with_name("solara"))
    if not Path(solara).exists():
        raise FinsimError("the solara command is not installed (pip install solara)")
    cmd = [solara, "run", "finsim_mesa.viz.app", "--host", args.host, "--port", str(args.port)]
    if not args.open:
        cmd.append("--no-open")
    print(f"serving the finsim-mesa app on http://{args.host}:{args.port}/ (Ctrl-C to stop)")
    return _run_child(cmd)


def _run_child(cmd: list[str]) -> int:
    """Run the server as a child and take it down with us: on SIGTERM or SIGHUP
    (``kill``, a closed terminal) as on Ctrl-C, the child is stopped (killed if
    it has not gone 10 s later) and waited for, so it never keeps the port after
    this process has gone. Returns the child's exit status, or 128 + signal."""
    import signal
    import subprocess
    import time

    child = subprocess.Popen(cmd)
    asked: list[tuple[int, float]] = []  # (signal, when): the handler only records it

    def on_signal(signum: int, _frame: object) -> None:
        asked.append((signum, time.monotonic()))

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while True:
        try:
            code = child.wait(timeout=0.2)
            return 128 + asked[0][0] if asked else code
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:
            asked.append((signal.SIGINT, time.monotonic()))
        if asked:
            if time.monotonic() - asked[0][1] > 10:
                child.kill()
            elif child.poll() is None:
                child.terminate()


def add_parser(sub: argparse._SubParsersAction) -> None:
    vz = sub.add_parser("viz", help="serve the Solara app (network, charts, shocks)")
    vz.add_argument("--host", default="127.0.0.1")
    vz.add_argument("--port", type=int, default=8765)
    vz.add_argument("--open", action="store_true", help="open a browser")
    vz.set_defaults(func=cmd_viz)
