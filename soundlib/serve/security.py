"""The guards of ``soundlib serve`` (a local server is an attack surface).

- :func:`check_bind`: a non-loopback address is refused at start unless ``$SOUNDLIB_SERVE_TOKEN`` is set.
- Host header: Starlette's ``TrustedHostMiddleware`` with :func:`soundlib.serve.config.allowed_hosts` (a page on
  another site that rebinds its DNS name to 127.0.0.1 still sends its own name and gets 400).
- :class:`TokenGate`: with a token, every request needs it (``Authorization: Bearer``, or the cookie set by
  opening ``/?token=...`` once); compared in constant time.
- :class:`BodyLimit`: a request body over ``max_upload_bytes`` gets 413 before it is read (Content-Length) or as
  soon as it passes the limit (chunked).
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soundlib.errors import SoundlibError
from soundlib.serve.config import TOKEN_COOKIE, TOKEN_ENV, is_loopback


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token.

    Raises:
        SoundlibError: ``host`` is not a loopback address and ``token`` is empty.
    """
    if not is_loopback(host) and not token:
        raise SoundlibError(f"--host {host} makes the page reachable from other machines: set ${TOKEN_ENV} to a "
                            "secret first (the page then asks for it), or keep the default 127.0.0.1")


async def _send_json(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class TokenGate:
    """Require ``token`` on every HTTP request (no-op when ``token`` is empty).

    ``GET /?token=SECRET`` with the right token sets an HttpOnly, SameSite=Strict cookie and redirects to ``/``,
    so the page, its audio elements and its downloads carry the token from then on.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token or ""

    def _ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())  # type: ignore[union-attr]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.token or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookie = None
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE:
                cookie = value
        if self._ok(bearer) or self._ok(cookie):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope.get("path") == "/" and self._ok((query.get("token") or [None])[0]):
            cookie_header = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", b"/"), (b"set-cookie", cookie_header), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await _send_json(send, 401, f"this server needs its token: open /?token=... once, or send "
                                    f"'Authorization: Bearer' (the value of ${TOKEN_ENV} where it was started)")


class _TooLarge(HTTPException):
    """Raised by the body reader of an endpoint (Starlette turns it into the 413 answer)."""


class BodyLimit:
    """Answer 413 to a request whose body is larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _message(self) -> str:
        return f"upload too large (limit {self.max_bytes / 2**20:.0f} MiB per request)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, self._message(), [(b"connection", b"close")])
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, self._message())
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, self._message(), [(b"connection", b"close")])
