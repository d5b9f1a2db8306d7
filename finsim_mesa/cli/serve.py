"""``finsim serve``: the REST API with uvicorn (needs the api extra).

On the loopback interface (127.0.0.1, ::1, localhost) the API may run
without a token. Any other ``--host`` makes it reachable from other machines,
so the server refuses to start unless a token is set (``--token`` or the
``FINSIM_API_TOKEN`` environment variable, which keeps it out of the process
list); with a token every request but ``GET /health`` needs
``Authorization: Bearer <token>``.

Simulations survive a restart (a kill included): every change is journaled
in the data folder (``--data``, default ``finsim-data`` in the current
folder) and replayed when the server starts (:mod:`finsim_mesa.api.journal`);
``--no-journal`` keeps them in memory only. One server per data folder.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from collections.abc import Callable
from typing import Any

from finsim_mesa.errors import FinsimError

TOKEN_ENV = "FINSIM_API_TOKEN"  # the same name as finsim_mesa.api.app.TOKEN_ENV


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _checked(parse: Callable[[str], Any], ok: Callable[[Any], bool], allowed: str
             ) -> Callable[[str], Any]:
    """An argparse ``type``: ``parse`` the text, refuse it unless ``ok``; the
    message (argparse prints it after the flag's name, exit 2) says what is
    allowed."""
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: give {allowed}"
                                             ) from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {allowed}")
        return value
    return convert


PORT = _checked(int, lambda v: 0 < v < 65536, "a port in 1..65535")
AT_LEAST_ONE = _checked(int, lambda v: v >= 1, "a whole number >= 1")
SECONDS = _checked(float, lambda v: math.isfinite(v) and v > 0,
                   "a finite number of seconds > 0 (e.g. 3600)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the REST API with uvicorn (``--reload`` restarts it on code changes)."""
    import importlib.util
    import os

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise FinsimError(f"the REST API needs the api extra ({', '.join(missing)} missing): "
                          "pip install 'finsim-mesa[api]'")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise FinsimError(f"--token / {TOKEN_ENV} is empty: give a token (e.g. the output of "
                          "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if not token and not is_loopback(args.host):
        raise FinsimError(
            f"--host {args.host} makes the API reachable from other machines, and it has no "
            f"authentication without a token: set {TOKEN_ENV} (or --token) to a secret, "
            "or serve on 127.0.0.1")
    if not args.no_journal and not args.data.strip():
        raise FinsimError("--data is empty: give a folder (or --no-journal)")
    import uvicorn

    data = "" if args.no_journal else args.data
    os.environ.update({"FINSIM_MODELS_DIR": args.models, "FINSIM_MAX_BANKS": str(args.max_banks),
                       "FINSIM_MAX_STEPS_PER_REQUEST": str(args.max_steps),
                       "FINSIM_MAX_SIMULATIONS": str(args.max_simulations),
                       "FINSIM_IDLE_TTL_S": str(args.idle_ttl), "FINSIM_DATA_DIR": data})
    if token:
        os.environ[TOKEN_ENV] = token  # read by create_app_from_env (a factory: --reload)
    app: object = "finsim_mesa.api.app:create_app_from_env"
    if not args.reload:  # built here: a refusal (data folder in use) is a clear exit 2
        from finsim_mesa.api.app import create_app_from_env

        if data:
            print(f"restoring the simulations journaled in {data} ...", flush=True)
        app = create_app_from_env()
        if app.state.replay is not None:
            print(f"{app.state.replay.summary()} (data folder {data})", flush=True)
    auth = "bearer token required" if token else "no token (loopback only)"
    kept = f"journal in {data}" if data else "no journal: simulations end with the server"
    print(f"finsim-mesa API on http://{args.host}:{args.port}/ ({auth}; {kept}; OpenAPI docs "
          "at /docs; Ctrl-C to stop)", flush=True)
    try:
        uvicorn.run(app, factory=args.reload, host=args.host, port=args.port,
                    reload=args.reload, log_level=args.log_level)
    finally:
        journal = getattr(getattr(app, "state", None), "journal", None)
        if journal is not None:
            journal.close()  # idempotent: the app's shutdown closed it already
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser("serve", help="serve the REST API (needs the api extra)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface (default 127.0.0.1; any other needs a token)")
    sv.add_argument("--port", type=PORT, default=8000, help="port (default 8000)")
    sv.add_argument("--token", default=None,
                    help=f"bearer token clients must send (default: ${TOKEN_ENV}; prefer the "
                         "variable, a flag shows in the process list)")
    sv.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    sv.add_argument("--models", default="models", help="folder of trained models")
    sv.add_argument("--data", default="finsim-data",
                    help="data folder: the journal that brings simulations back after a "
                         "restart (default finsim-data; one server per folder)")
    sv.add_argument("--no-journal", action="store_true",
                    help="keep simulations in memory only (lost when the server stops)")
    for flag, default, what in (("--max-banks", 2000, "most banks per simulation"),
                                ("--max-steps", 5000, "most steps per request"),
                                ("--max-simulations", 32, "most live simulations")):
        sv.add_argument(flag, type=AT_LEAST_ONE, default=default, help=f"{what} (default "
                        f"{default}; a freed simulation makes room: DELETE /simulation)")
    sv.add_argument("--idle-ttl", type=SECONDS, default=3600.0,
                    help="seconds before an idle simulation is dropped (and its journal "
                         "deleted); default 3600")
    sv.add_argument("--log-level", default="info",
                    choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)
