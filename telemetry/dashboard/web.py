"""The dashboard over HTTP: one request handler (:class:`Dashboard`), mounted in the worker's
Faust app (:mod:`telemetry.dashboard.worker`) or served on its own by ``telemetry ui`` (:func:`serve`).

Pages (GET only, read-only; the same binding and token as the SQL page, see
:mod:`telemetry.dashboard.auth`):

- ``/``: the overview; ``/route/?name=<route>``: one route; ``/alerts/``: alerts;
  ``?range=hour|day|week`` on each (default: day);
- ``/static/dashboard.css``, ``dashboard.js``, ``favicon.svg``: the package's assets (no token:
  they hold no data).

Each page runs its queries on an executor thread (the loaders block); at most ``max_waiting``
page loads wait at once, more get 503. Every answer carries a Content-Security-Policy that allows
only this origin's own script and stylesheet, ``Referrer-Policy: no-referrer`` and ``no-store``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from aiohttp import web

from telemetry.dashboard import auth, pages, views
from telemetry.sql import Query

__all__ = ["PAGES", "SECURITY_HEADERS", "Dashboard", "Reply", "Request", "aiohttp_app", "request_of", "response", "serve"]

log = logging.getLogger(__name__)

PAGES = ("/", "/route/", "/alerts/")
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    """What the handler needs of an HTTP request."""

    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    authorization: str = ""
    cookie: str | None = None
    secure: bool = False

    def param(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.params if k == name), default)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/html"
    headers: dict[str, str] = field(default_factory=dict)


class Dashboard:
    """The pages over one blocking :data:`telemetry.sql.Query`. :meth:`respond` runs on the event
    loop and never blocks it: queries run on ``executor``."""

    def __init__(self, *, query: Query, database: str, token: str | None, executor: Executor,
                 ready: Callable[[], bool] = lambda: True, max_waiting: int = 8, refresh_s: int = 30) -> None:  # fmt: skip
        self.query = query
        self.database = database
        self.token = token or None
        self.executor = executor
        self.ready = ready
        self.max_waiting = max_waiting
        self.refresh_s = refresh_s
        self.waiting = 0

    async def respond(self, request: Request) -> Reply:
        """The answer to a GET of ``request.path``. Never raises."""
        if request.path.startswith("/static/"):
            return self._static(request)
        if request.path not in PAGES:
            return self._page(404, pages.message_page("Not found", "No such page.", chrome=pages.served("/")))
        base = "" if request.path == "/" else "../"
        chrome = pages.served(base, self.refresh_s)
        decision = auth.decide(self.token, params=request.params, authorization=request.authorization,
                               cookie=request.cookie, secure=request.secure)  # fmt: skip
        if decision.redirect is not None:
            headers = {"Location": decision.redirect, **({"Set-Cookie": decision.set_cookie} if decision.set_cookie else {})}
            return self._page(303, "", headers)
        if not decision.allowed:
            body = pages.message_page("Token needed", decision.reason, chrome=pages.Chrome(base, False, 0, False), form=True)
            return self._page(401, body, {"WWW-Authenticate": 'Bearer realm="llm-telemetry"'})
        if not self.ready():
            body = pages.message_page("Starting", "The worker is starting: this page reloads by itself.", chrome=chrome)
            return self._page(503, body, {"Retry-After": "5"})
        if self.waiting >= self.max_waiting:
            return self._page(503, pages.message_page("Busy", "Too many pages load at once; retry in a moment.",
                                                      chrome=chrome), {"Retry-After": "5"})  # fmt: skip
        self.waiting += 1
        try:
            render = self._renderer(request, chrome)
            if render is None:
                return self._page(400, pages.message_page("Which route?", "Open a route from the overview.", chrome=chrome))
            html = await asyncio.get_running_loop().run_in_executor(self.executor, render)
        except Exception as exc:  # a failed query or an engine that is away: say so, keep serving
            log.warning("dashboard page %s failed: %s", request.path, exc)
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            return self._page(500, pages.message_page("The data could not be read", first, chrome=chrome))
        finally:
            self.waiting -= 1
        return self._page(200, html)

    def _renderer(self, request: Request, chrome: pages.Chrome) -> Callable[[], str] | None:
        query, db = self.query, self.database
        if request.path == "/alerts/":
            rng = _range(request.param("range"), "day")
            return lambda: pages.alerts_page(views.load_alerts(query, db, rng), chrome=chrome)
        if request.path == "/route/":
            route = request.param("name")
            if not route:
                return None
            rng = _range(request.param("range"), "day")
            return lambda: pages.route_page(views.load_route(query, db, route, rng), chrome=chrome)
        rng = _range(request.param("range"), "day")
        return lambda: pages.overview_page(views.load_overview(query, db, rng), chrome=chrome)

    def _static(self, request: Request) -> Reply:
        name = request.path.removeprefix("/static/")
        if name not in pages.ASSETS:
            return Reply(404, b"not found", "text/plain", dict(SECURITY_HEADERS))
        cache = "public, max-age=31536000, immutable" if request.param("v") == pages.asset_version() else "no-cache"
        return Reply(200, pages.asset(name), pages.ASSETS[name], {**SECURITY_HEADERS, "Cache-Control": cache})

    @staticmethod
    def _page(status: int, html: str, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, html.encode(), "text/html", {**SECURITY_HEADERS, "Cache-Control": "no-store", **(headers or {})})


def _range(value: str, default: str) -> str:
    return value if value in views.RANGES else default


# -- aiohttp (Faust's web server and telemetry ui) ---------------------------------------------------------
def request_of(request: web.Request) -> Request:
    proto = request.headers.get("X-Forwarded-Proto", "")
    return Request(
        path=request.path, params=list(request.query.items()), authorization=request.headers.get("Authorization", ""),
        cookie=request.cookies.get(auth.COOKIE), secure=request.secure or proto.lower() == "https",
    )  # fmt: skip


def response(reply: Reply) -> web.Response:
    text = reply.content_type.startswith("text/") or reply.content_type.endswith("+xml")
    return web.Response(body=reply.body, status=reply.status, headers=reply.headers, content_type=reply.content_type,
                        charset="utf-8" if text else None)  # fmt: skip


def aiohttp_app(dashboard: Dashboard) -> web.Application:
    """A plain aiohttp application serving ``dashboard`` (``telemetry ui``)."""

    async def handle(request: web.Request) -> web.Response:
        return response(await dashboard.respond(request_of(request)))

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


# -- telemetry ui ---------------------------------------------------------------------------------------------
async def serve(dashboard: Dashboard, host: str, port: int, *, announce: Callable[[str], None] = print,
                stop: asyncio.Event | None = None) -> None:  # fmt: skip
    """Serve ``dashboard`` on ``host:port`` until ``stop`` is set (or forever). Raises OSError when
    the port is taken."""
    runner = web.AppRunner(aiohttp_app(dashboard), access_log=None)  # no access log: ?token= stays out of logs
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        shown = f"[{host}]" if ":" in host else host
        announce(f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else shown}:{port}/")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
