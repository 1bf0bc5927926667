"""The OIDC token request carries the client secret (issue 23, item 6): https:// only (plain http:// to a
loopback address, for tests), no redirect followed, the response bounded in size and in time. Against
real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streams.errors import AuthError, JobError
from streams.kafka.client_config import ClientConfigError, KafkaClientConfig
from streams.kafka.oauth import OidcTokenProvider

MAX_RESPONSE_BYTES = 65_536  # streams.kafka.oauth.MAX_RESPONSE_BYTES

Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def server(handle: Handler) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP server answering every POST (and GET) with `handle`; yields its URL and the requests'
    headers."""
    seen: list[dict[str, str]] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(dict(self.headers))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            handle(self)

        def do_GET(self) -> None:  # what a followed 302 turns the POST into
            seen.append(dict(self.headers))
            handle(self)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/token", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def answer(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handle


TOKEN = b'{"access_token":"tok","expires_in":600}'


def provider(url: str, timeout_s: float | None = None) -> OidcTokenProvider:
    if timeout_s is None:
        return OidcTokenProvider(url, "client", "s3cret-value", None)
    return OidcTokenProvider(url, "client", "s3cret-value", None, timeout_s=timeout_s)


def test_a_loopback_endpoint_gives_a_token() -> None:
    with server(answer(TOKEN)) as (url, seen):
        assert provider(url).fetch() == ("tok", 600.0)
    assert seen[0]["Authorization"].startswith("Basic ")


def test_a_redirect_is_refused_and_the_secret_goes_nowhere_else() -> None:
    with server(answer(TOKEN)) as (elsewhere, elsewhere_seen):
        with server(answer(b"", 302, {"Location": elsewhere})) as (url, _):
            with pytest.raises(AuthError, match="redirect refused"):
                provider(url).fetch()
    assert elsewhere_seen == [], "the token request followed the redirect"


@pytest.mark.parametrize(
    "url", ["http://idp.example/token", "http://10.0.0.1/token", "ftp://idp.example/token", "idp/token"]
)
def test_only_https_or_loopback_http(url: str) -> None:
    with pytest.raises(JobError, match="https://"):
        provider(url)
    with pytest.raises(ClientConfigError, match="https://"):
        KafkaClientConfig.load(
            pairs=[
                "security.protocol=SASL_SSL",
                "sasl.mechanism=OAUTHBEARER",
                "sasl.oauthbearer.method=oidc",
                f"sasl.oauthbearer.token.endpoint.url={url}",
                "sasl.oauthbearer.client.id=c",
                "sasl.oauthbearer.client.secret=s",
            ]
        )
    provider("https://idp.example/token")  # accepted (not fetched)
    provider("http://[::1]:8080/token")


def test_a_huge_response_is_refused() -> None:
    body = b'{"access_token":"tok","pad":"' + b"x" * (4 * MAX_RESPONSE_BYTES) + b'"}'
    with server(answer(body)) as (url, _):
        with pytest.raises(AuthError, match="more than"):
            provider(url).fetch()


def test_a_dripping_response_is_bounded_in_time() -> None:
    """The server sends its (valid) answer a byte every 0.2 s: the fetch gives up at its deadline instead
    of waiting for the whole body (each read returns before the socket timeout, so only a total deadline
    stops it)."""

    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(TOKEN)))
        h.end_headers()
        for i in range(len(TOKEN)):
            try:
                h.wfile.write(TOKEN[i : i + 1])
                h.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)

    with server(drip) as (url, _):
        with pytest.raises(AuthError, match="within"):
            provider(url, timeout_s=1.0).fetch()
