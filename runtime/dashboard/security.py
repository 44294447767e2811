"""Who may see the dashboard (token or basic auth) and who may act (POST + CSRF token).

The CSRF token is derived from a secret drawn when the app starts and sent in every form;
a page of another origin cannot read it, so it cannot forge a POST. The Origin header,
when a browser sends one, must be the dashboard's own as well. Every response carries a
Content-Security-Policy without inline scripts, so even markup that escaped escaping
could not run script.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.dashboard.config import DashboardConfig

TOKEN_COOKIE = "wasmq_dashboard"
CSRF_FIELD = "csrf"
#: Largest form body an action reads.
FORM_MAX = 256 * 1024

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class Refused(Exception):
    """An action the dashboard will not do: ``status`` and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Guard:
    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self._secret = secrets.token_bytes(32)

    # -- CSRF ----------------------------------------------------------------------

    def csrf_token(self) -> str:
        return hmac.new(self._secret, b"csrf", "sha256").hexdigest()

    async def action_form(self, request: Request) -> FormData:
        """The form of a state-changing POST, once it passed every check."""
        if self.config.read_only:
            raise Refused(403, "this dashboard is read-only (started with --read-only)")
        if request.method != "POST":
            raise Refused(405, "actions are POSTs")
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.rstrip("/") != _own_origin(request):
            raise Refused(403, f"cross-origin action from {origin} refused")
        body = await request.body()
        if len(body) > FORM_MAX:
            raise Refused(413, "form too large")
        pairs: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        )
        form = FormData(pairs)
        sent = str(form.get(CSRF_FIELD, ""))
        if not hmac.compare_digest(sent.encode(), self.csrf_token().encode()):
            raise Refused(403, "missing or stale CSRF token: reload the page and try again")
        return form

    # -- authentication ------------------------------------------------------------

    def authenticated(self, request: Request) -> bool:
        cfg = self.config
        if not cfg.needs_auth:
            return True
        if cfg.token is not None:
            want = cfg.token.encode()
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer ") and hmac.compare_digest(
                header[7:].strip().encode(), want
            ):
                return True
            cookie = request.cookies.get(TOKEN_COOKIE, "")
            if cookie and hmac.compare_digest(cookie.encode(), self._cookie_value().encode()):
                return True
        if cfg.basic_auth is not None:
            header = request.headers.get("authorization", "")
            if header.lower().startswith("basic "):
                try:
                    raw = base64.b64decode(header[6:].strip(), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    return False
                user, _, password = raw.partition(":")
                want_user, want_password = cfg.basic_auth
                ok_user = hmac.compare_digest(user.encode(), want_user.encode())
                ok_password = hmac.compare_digest(password.encode(), want_password.encode())
                return ok_user and ok_password
        return False

    def _cookie_value(self) -> str:
        # Not the token itself: a leaked cookie dies with this server process.
        assert self.config.token is not None
        return hmac.new(self._secret, self.config.token.encode(), "sha256").hexdigest()

    def login(self, request: Request) -> Response | None:
        """``?token=T`` on any page: a cookie, and the same page without the token."""
        given = request.query_params.get("token")
        if given is None or self.config.token is None:
            return None
        if not hmac.compare_digest(given.encode(), self.config.token.encode()):
            return PlainTextResponse("wrong token", status_code=401)
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.replace(query="&".join(f"{k}={v}" for k, v in query))
        response = RedirectResponse(str(target.path) + (f"?{target.query}" if query else ""), 303)
        response.set_cookie(
            TOKEN_COOKIE, self._cookie_value(), httponly=True, samesite="strict", path="/"
        )
        return response

    def challenge(self) -> Response:
        if self.config.basic_auth is not None:
            return PlainTextResponse(
                "authentication required",
                status_code=401,
                headers={"www-authenticate": 'Basic realm="wasmq", charset="UTF-8"'},
            )
        return PlainTextResponse(
            "authentication required: send Authorization: Bearer TOKEN or open ?token=TOKEN",
            status_code=401,
        )


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


class GuardMiddleware:
    """Authentication on every path, and the security headers on every response."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        early = self.guard.login(request)
        if early is None and not self.guard.authenticated(request):
            early = self.guard.challenge()
        if early is not None:
            await _with_headers(early)(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])  # type: ignore[call-overload]
                names = {bytes(k).lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in names:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)  # type: ignore[arg-type]


def _with_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


Handler = Callable[[Request], Awaitable[Response]]
