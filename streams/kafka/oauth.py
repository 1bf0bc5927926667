"""OAUTHBEARER for the worker's aiokafka clients: OIDC client credentials, as librdkafka's
`sasl.oauthbearer.method=oidc` does for our confluent-kafka clients.

The token is fetched from the token endpoint with the client id and secret (HTTP basic auth, the
grant `client_credentials`, the optional scope), and reused until shortly before it expires.

The request carries the client secret, so: the endpoint must be `https://` (plain `http://` only to a
loopback address, for tests); a redirect is refused, never followed (it would send the secret to
whatever host it names); the response is read to at most MAX_RESPONSE_BYTES and within
`timeout_s` in all (a server that drips its answer cannot hold the worker).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, NoReturn

import orjson
from aiokafka.abc import AbstractTokenProvider  # type: ignore[import-untyped]

from streams.errors import AuthError, JobError

REFRESH_MARGIN_S = 60.0
MAX_RESPONSE_BYTES = 65_536  # a token response is a few KB; more is not one
FETCH_TIMEOUT_S = 30.0


def endpoint_problem(url: str) -> str | None:
    """Why a token endpoint URL cannot carry the client secret (None: it can)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return None
        return "must be https:// (plain http:// only to a loopback address): it carries the client secret"
    return "must be an https:// URL"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every redirect refused: following one would send the client secret to the host it names."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> NoReturn:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect refused ({code})", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect())


class OidcTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str,
        scope: str | None,
        timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        problem = endpoint_problem(endpoint)
        if problem is not None:
            raise JobError(f"sasl.oauthbearer.token.endpoint.url {problem}")
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"OidcTokenProvider(endpoint={self.endpoint!r}, client_id={self.client_id!r})"

    async def token(self) -> str:
        if self._token is None or time.monotonic() > self._expires - REFRESH_MARGIN_S:
            self._token, lifetime = await asyncio.get_running_loop().run_in_executor(None, self.fetch)
            self._expires = time.monotonic() + lifetime
        assert self._token is not None  # fetch() returns a token or raises
        return self._token

    def fetch(self) -> tuple[str, float]:
        """(access token, lifetime in seconds) from the token endpoint."""
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        basic = base64.b64encode(
            f"{urllib.parse.quote(self.client_id)}:{urllib.parse.quote(self._secret)}".encode()
        ).decode()
        request = urllib.request.Request(
            self.endpoint,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        deadline = time.monotonic() + self.timeout_s
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                body: Any = orjson.loads(self._read(response, deadline))
        except AuthError:
            raise
        except Exception as exc:
            raise AuthError(f"OAUTHBEARER: token endpoint {self.endpoint} refused or failed: {exc}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise AuthError(f"OAUTHBEARER: token endpoint {self.endpoint} returned no access_token")
        return token, float(body.get("expires_in", 300))

    def _read(self, response: Any, deadline: float) -> bytes:
        """The body, at most MAX_RESPONSE_BYTES, read before `deadline` (each read also has the socket
        timeout, so the loop cannot block past it for long)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise AuthError(
                    f"OAUTHBEARER: token endpoint {self.endpoint} did not answer within {self.timeout_s:g}s"
                )
            chunk = response.read1(8192) if hasattr(response, "read1") else response.read(8192)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise AuthError(
                    f"OAUTHBEARER: token endpoint {self.endpoint} answered more than "
                    f"{MAX_RESPONSE_BYTES} bytes"
                )
            chunks.append(chunk)
