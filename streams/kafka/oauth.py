"""OAUTHBEARER for the worker's aiokafka clients: OIDC client credentials, as librdkafka's
`sasl.oauthbearer.method=oidc` does for our confluent-kafka clients.

The token is fetched from the token endpoint with the client id and secret (HTTP basic auth, the
grant `client_credentials`, the optional scope), and reused until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
import urllib.request
from typing import Any

import orjson
from aiokafka.abc import AbstractTokenProvider

from streams.errors import AuthError

REFRESH_MARGIN_S = 60.0


class OidcTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    def __init__(self, endpoint: str, client_id: str, client_secret: str, scope: str | None) -> None:
        self.endpoint = endpoint
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
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body: Any = orjson.loads(response.read())
        except Exception as exc:
            raise AuthError(f"OAUTHBEARER: token endpoint {self.endpoint} refused or failed: {exc}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise AuthError(f"OAUTHBEARER: token endpoint {self.endpoint} returned no access_token")
        return token, float(body.get("expires_in", 300))
