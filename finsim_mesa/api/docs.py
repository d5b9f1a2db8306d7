"""The documentation pages, served without the internet.

FastAPI's ``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles
from a CDN, so they are blank on a machine that cannot reach it. Here both
pages load the copies that the ``fastapi-offline`` package ships (Swagger UI
5 and ReDoc, part of the ``api`` extra), served under ``/docs/static``; nothing
on either page points off the server (Swagger UI's online validator is off,
ReDoc's web fonts are not loaded).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from finsim_mesa.errors import FinsimError

__all__ = ["STATIC_URL", "install_docs", "static_dir"]

STATIC_URL = "/docs/static"


def static_dir() -> Path:
    """The folder of Swagger UI's and ReDoc's files (from ``fastapi-offline``).

    Raises:
        FinsimError: the package is missing (the ``api`` extra installs it).
    """
    try:
        import fastapi_offline
    except ImportError as err:
        raise FinsimError("the API's documentation pages need fastapi-offline (part of the "
                          "api extra): pip install 'finsim-mesa[api]'") from err
    folder = Path(fastapi_offline.__file__).parent / "static"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js",
                 "favicon.png"):
        if not (folder / name).is_file():
            raise FinsimError(f"fastapi-offline's {name} is missing from {folder}; "
                              "reinstall it: pip install --force-reinstall fastapi-offline")
    return folder


def install_docs(app: FastAPI) -> None:
    """``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` with local assets
    (the application must be built with ``docs_url=None, redoc_url=None``)."""
    app.mount(STATIC_URL, StaticFiles(directory=static_dir()), name="docs-static")

    _page(app, "/docs", "swagger_ui", get_swagger_ui_html, "Swagger UI",
          {"swagger_js_url": "swagger-ui-bundle.js", "swagger_css_url": "swagger-ui.css",
           "swagger_favicon_url": "favicon.png"},
          swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False})
    _page(app, "/redoc", "redoc", get_redoc_html, "ReDoc",
          {"redoc_js_url": "redoc.standalone.js", "redoc_favicon_url": "favicon.png"},
          with_google_fonts=False)


def _page(app: FastAPI, path: str, name: str, build: Callable[..., HTMLResponse], title: str,
          files: dict[str, str], **options: Any) -> None:
    """Add ``GET path`` (route ``name``, not in the OpenAPI document): the page
    ``build`` makes of ``app``'s OpenAPI document, titled "<app title> - title",
    with each keyword of ``files`` the URL of that file under :data:`STATIC_URL`
    (behind the request's root path, as the document's URL), and ``options``."""
    async def view(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return build(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - {title}",
                     **{key: f"{root}{STATIC_URL}/{file}" for key, file in files.items()},
                     **options)

    app.get(path, include_in_schema=False, name=name)(view)
