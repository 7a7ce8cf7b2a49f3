"""Mount the console and the offline API docs on the API application.

/            → redirect to /console/
/docs        Swagger UI   } assets from the fastapi-offline package, served at
/redoc       ReDoc        } /static/docs: nothing is fetched from a CDN
/console/…   the console, a sub-application sharing the API's state (database,
             settings, store), with HTML error pages and its own security headers
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.console.dependencies import SignInRequired
from app.console.router import render, router, sign_in_page
from app.console.session import Sessions
from app.core.errors import LetheError

DOCS_ASSETS = "/static/docs"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Console responses may only load the console's own assets and are never framed;
    pages (not the static assets) are not cached, since they show who is signed in."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/console/static/")

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + _HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, _send)


def _back(request: Request) -> str:
    path = request.url.path
    return path.rsplit("/", 1)[0] if request.method == "POST" else "/console/requests"


def build_console(parent: FastAPI) -> FastAPI:
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    console.state = parent.state  # the same database, settings and store as the API
    settings = parent.state.settings
    console.state.console_sessions = Sessions(settings.secret_key.get_secret_value())
    console.include_router(router)
    console.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @console.exception_handler(LetheError)
    async def _error(request: Request, exc: LetheError) -> Response:
        if isinstance(exc, SignInRequired):
            html = "text/html" in request.headers.get("accept", "")
            if request.method == "GET" and html:
                # a page opened in the browser: off to the sign-in form, and back after
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(
                    "/console/sign-in?" + urlencode({"next": target}), status_code=303
                )
            return sign_in_page(request, status_code=401)
        return render(
            request,
            "error.html",
            None,
            status_code=exc.status,
            title=exc.title,
            detail=exc.detail,
            back=_back(request),
        )

    @console.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = [
            (".".join(str(p) for p in e.get("loc", ())[1:]) or "form", e.get("msg", "invalid"))
            for e in exc.errors()
        ]
        return render(
            request,
            "error.html",
            None,
            status_code=422,
            title="Check the form",
            detail="Some fields were not accepted; nothing was changed.",
            fields=fields,
            back=_back(request),
        )

    @console.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return render(
            request,
            "error.html",
            None,
            status_code=exc.status_code,
            title=str(exc.detail),
            detail="",
            back="/console/requests",
        )

    return console


def install(app: FastAPI) -> None:
    """Call with an app built with `docs_url=None, redoc_url=None`."""
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API reference",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    async def root(request: Request) -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.add_route("/", root, include_in_schema=False)
    app.mount("/console", SecurityHeaders(build_console(app)), name="console")
