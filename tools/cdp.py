"""Headless Chromium driven over the Chrome DevTools Protocol, with aiohttp's websocket client.

Used by the dashboard's browser tests and ``python -m tools.dashboard_paint``. No driver binary
and no new dependency: Debian's ``chromium`` (``/usr/bin/chromium``) is started with
``--remote-debugging-port=0``, its websocket address is read from its stderr, and one page target
is attached in flat mode. The page records console errors, uncaught exceptions and failed
resources (``Log.entryAdded`` at level error: a 404, a CSP violation).

:class:`Browser` is synchronous (it runs its own event loop on a thread) so pytest tests can use
it without an async plugin::

    with Browser() as browser:
        page = browser.page()
        page.goto("http://127.0.0.1:6066/")
        page.evaluate("document.title")
        page.screenshot(Path("overview.png"))
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

__all__ = ["Browser", "BrowserError", "Page", "chromium_path"]

T = TypeVar("T")
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class BrowserError(RuntimeError):
    """Chromium did not start, a command failed, or a page did not load in time."""


def chromium_path() -> str:
    """``$CHROMIUM``, else the first of ``chromium``, ``chromium-browser``, ``google-chrome`` on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise BrowserError("no Chromium found: install Debian's chromium package (apt-get install chromium)")


class _Connection:
    """One websocket to the browser; commands by id, events dispatched to sessions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.listeners: dict[str, list[Any]] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = message.json()
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                for listener in self.listeners.get(data.get("sessionId", ""), []):
                    listener(data["method"], data.get("params", {}))
        for future in self.pending.values():
            if not future.done():
                future.set_exception(BrowserError("the browser closed the connection"))

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
                   timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        ident = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.ws.send_json(message)
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return dict(reply.get("result", {}))


class Page:
    """One tab. Methods block (they run on the browser's loop)."""

    def __init__(self, browser: Browser, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target
        self.errors: list[str] = []
        self.console: list[str] = []
        self._loaded: asyncio.Event | None = None

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "exception")
            self.errors.append(f"uncaught: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Page.loadEventFired" and self._loaded is not None:
            self._loaded.set()

    async def _send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        assert self.browser.connection is not None
        return await self.browser.connection.send(method, params, self.session, timeout)

    async def _goto(self, url: str, timeout: float) -> None:
        self._loaded = asyncio.Event()
        result = await self._send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {result['errorText']}")
        try:
            await asyncio.wait_for(self._loaded.wait(), timeout)
        except TimeoutError:
            raise BrowserError(f"{url} did not load within {timeout:.0f} s") from None

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event."""
        self.browser.run(self._goto(url, timeout))

    async def _evaluate(self, expression: str, timeout: float) -> Any:
        result = await self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                       "awaitPromise": True}, timeout)  # fmt: skip
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"evaluate failed: {details.get('exception', {}).get('description') or details.get('text')}")
        return result.get("result", {}).get("value")

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON-compatible data."""
        return self.browser.run(self._evaluate(expression, timeout))

    async def _screenshot(self, path: Path, full_page: bool) -> None:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = await self._evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]", 10)
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        result = await self._send("Page.captureScreenshot", params, 60)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """Write a PNG of the page (the whole document with ``full_page``)."""
        self.browser.run(self._screenshot(path, full_page))
        return path

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Any DevTools command on this page's session."""
        return self.browser.run(self._send(method, params))


class Browser:
    """A headless Chromium process and its DevTools connection; a context manager."""

    def __init__(self, executable: str | None = None, *, width: int = 1440, height: int = 900) -> None:
        self.executable = executable or chromium_path()
        self.width, self.height = width, height
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cdp", daemon=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile = tempfile.mkdtemp(prefix="cdp-profile-")
        self.session: aiohttp.ClientSession | None = None
        self.connection: _Connection | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Browser:
        self.thread.start()
        args = [self.executable, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
                "--disable-background-networking", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                f"--window-size={self.width},{self.height}", "about:blank"]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        url = None
        lines: list[str] = []
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode(errors="replace")
            lines.append(line)
            if match := _LISTENING.search(line):
                url = match.group(1)
                break
        if url is None:
            self.close()
            raise BrowserError("Chromium did not start:\n" + "".join(lines[-20:]))
        threading.Thread(target=self._drain, daemon=True).start()
        self.run(self._connect(url))
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for _ in iter(self.proc.stderr.readline, b""):
            pass

    async def _connect(self, url: str) -> None:
        self.session = aiohttp.ClientSession()
        ws = await self.session.ws_connect(url, max_msg_size=0)
        self.connection = _Connection(ws)

    async def _page(self) -> Page:
        assert self.connection is not None
        target = (await self.connection.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await self.connection.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, session, target)
        self.connection.listeners[session] = [page._on_event]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            await page._send(method)
        await page._send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                                 "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        return page

    def page(self) -> Page:
        """A new tab, with console, exception and log capture on."""
        return self.run(self._page())

    async def _close(self) -> None:
        if self.connection is not None:
            try:
                await self.connection.send("Browser.close", timeout=5)
            except (BrowserError, TimeoutError, ConnectionError, aiohttp.ClientError):
                pass
            self.connection.reader.cancel()
        if self.session is not None:
            await self.session.close()

    def close(self) -> None:
        if self.thread.is_alive():
            try:
                self.run(self._close(), timeout=15)
            except Exception:  # noqa: BLE001 - closing: the process is killed below anyway
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
