"""Who may read the dashboard: a pure decision from the request's credentials.

With ``TELEMETRY_WEB_TOKEN`` unset every request may (the default binding is loopback). With it
set, a page is served to a request that carries one of:

- ``Authorization: Bearer <token>`` (scripts, ``curl``), as the stats and SQL pages want;
- the session cookie :data:`COOKIE`, whose value is ``HMAC-SHA256(token, "llm-telemetry
  dashboard session v1")`` in hex: it opens the dashboard's read-only pages and nothing else
  (the SQL and stats pages take only the header), and changing the token invalidates it;
- ``?token=<token>`` in the address, once: the answer is a redirect to the same address without
  it, setting the cookie ``HttpOnly; SameSite=Strict; Path=/`` (and ``Secure`` over HTTPS) for
  30 days. A browser cannot send a header when it follows a link, hence the cookie; the redirect
  keeps the token out of the address bar, bookmarks and the page's own links, and the pages send
  ``Referrer-Policy: no-referrer``. The worker keeps no access log, so the address is not logged.

Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

__all__ = ["COOKIE", "COOKIE_MAX_AGE", "Decision", "decide", "session_value"]

COOKIE = "llm_telemetry_session"
COOKIE_MAX_AGE = 30 * 86_400
_SESSION_LABEL = b"llm-telemetry dashboard session v1"


def session_value(token: str) -> str:
    """The cookie value that stands for ``token``: a keyed hash, never the token itself."""
    return hmac.new(token.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``: serve the page. ``redirect``: answer 303 to it, with ``set_cookie``."""

    allowed: bool
    redirect: str | None = None
    set_cookie: str | None = None
    reason: str = ""


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def decide(token: str | None, *, params: list[tuple[str, str]], authorization: str = "", cookie: str | None = None,
           secure: bool = False) -> Decision:  # fmt: skip
    """May this request read a page? ``params`` is its query string (in order), ``token`` the
    configured ``TELEMETRY_WEB_TOKEN`` (None or empty: no token needed). Pure. The redirect is
    relative (the same page without ``token``), so it holds behind a proxy's path prefix."""
    if not token:
        return Decision(True)
    given = [v for k, v in params if k == "token"]
    if given:
        if len(given) == 1 and _same(given[0], token):
            rest = [(k, v) for k, v in params if k != "token"]
            target = f"?{urlencode(rest)}" if rest else "./"  # relative: the same page, behind any prefix
            attrs = f"Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
            return Decision(False, redirect=target, set_cookie=f"{COOKIE}={session_value(token)}; {attrs}")
        return Decision(False, reason="the token in the address is not the right one")
    if authorization and _same(authorization, f"Bearer {token}"):
        return Decision(True)
    if cookie and _same(cookie, session_value(token)):
        return Decision(True)
    return Decision(False, reason="this dashboard needs TELEMETRY_WEB_TOKEN: open it once with ?token=<token>")
