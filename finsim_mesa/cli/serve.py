"""``finsim serve``: the REST API with uvicorn (needs the api extra)."""

from __future__ import annotations

import argparse

from finsim_mesa.errors import FinsimError


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the REST API with uvicorn (``--reload`` restarts it on code changes)."""
    import importlib.util
    import os

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise FinsimError(f"the REST API needs the api extra ({', '.join(missing)} missing): "
                          "pip install 'finsim-mesa[api]'")
    if not 0 < args.port < 65536:
        raise FinsimError(f"--port {args.port}: give a port in 1..65535")
    for name in ("max_banks", "max_steps", "max_simulations"):
        if getattr(args, name) < 1:
            raise FinsimError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.idle_ttl <= 0:
        raise FinsimError(f"--idle-ttl {args.idle_ttl}: must be > 0 seconds")
    import uvicorn

    os.environ.update({"FINSIM_MODELS_DIR": args.models, "FINSIM_MAX_BANKS": str(args.max_banks),
                       "FINSIM_MAX_STEPS_PER_REQUEST": str(args.max_steps),
                       "FINSIM_MAX_SIMULATIONS": str(args.max_simulations),
                       "FINSIM_IDLE_TTL_S": str(args.idle_ttl)})
    print(f"finsim-mesa API on http://{args.host}:{args.port}/ (OpenAPI docs at /docs; "
          "Ctrl-C to stop)", flush=True)
    uvicorn.run("finsim_mesa.api.app:create_app_from_env", factory=True, host=args.host,
                port=args.port, reload=args.reload, log_level=args.log_level)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser("serve", help="serve the REST API (needs the api extra)")
    sv.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    sv.add_argument("--models", default="models", help="folder of trained models")
    sv.add_argument("--max-banks", type=int, default=2000, help="most banks per simulation")
    sv.add_argument("--max-steps", type=int, default=5000, help="most steps per request")
    sv.add_argument("--max-simulations", type=int, default=32, help="most live simulations")
    sv.add_argument("--idle-ttl", type=float, default=3600.0,
                    help="seconds before an idle simulation is dropped")
    sv.add_argument("--log-level", default="info",
                    choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)
