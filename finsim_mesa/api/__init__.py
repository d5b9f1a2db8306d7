"""REST API of finsim-mesa (FastAPI; optional extra ``api``).

``finsim serve`` starts it; from Python, ``create_app()`` builds the
application (for ``uvicorn`` or Starlette's ``TestClient``).
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the install
    from finsim_mesa.errors import FinsimError

    raise FinsimError("the REST API needs the 'api' extra: pip install 'finsim-mesa[api]'") \
        from err

from finsim_mesa.api.app import create_app, create_app_from_env
from finsim_mesa.api.limits import ApiLimits

__all__ = ["ApiLimits", "create_app", "create_app_from_env"]
