"""The Redis store's client options: rediss:// verifies the certificate and the host name, whatever
redis-py's defaults (5.x did not check the host name)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.state.redis import RedisStore


def connection_kwargs(url: str, **options: Any) -> dict[str, Any]:
    store = RedisStore(url, "app", **options)
    kwargs: dict[str, Any] = store.client.connection_pool.connection_kwargs
    return kwargs


def test_rediss_checks_certificate_and_host_name() -> None:
    kwargs = connection_kwargs("rediss://redis.example:6380/0", tls={"ssl_ca_certs": "/ca.pem"})
    assert kwargs["ssl_check_hostname"] is True
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_ca_certs"] == "/ca.pem"


@pytest.mark.parametrize("query", ["ssl_cert_reqs=none", "ssl_check_hostname=false"])
def test_the_url_cannot_turn_the_checks_off(query: str) -> None:
    kwargs = connection_kwargs(f"rediss://redis.example:6380/0?{query}")
    assert kwargs["ssl_check_hostname"] is True and kwargs["ssl_cert_reqs"] == "required"
