"""Helpers for the TLS/SASL/mTLS and Redis TLS+ACL tests (test_secure.py).

`deploy/services.sh up` gives the test broker a SASL_SSL listener (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) and
an SSL listener requiring client certificates besides PLAINTEXT, Redis a TLS port and an ACL user, and
writes their client settings under .run/ (`IIS_PORTSCAN_RUN_DIR` points elsewhere, e.g. at a second
services.sh copy on other ports). `SecureServices.load()` reads them and checks that every port answers.
`other_ca()` makes a second throwaway CA with openssl: a CA file the broker's certificate does not chain to,
and a client certificate the broker does not trust. `run_to_exit()` runs a command that must end by itself
within a limit; everything is bounded in time.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .private_services import HOST, PrivateKafka, free_ports

ROOT = Path(__file__).resolve().parents[2]
RUN = Path(os.environ.get("IIS_PORTSCAN_RUN_DIR") or ROOT / ".run")
UP_HINT = (
    "run `deploy/services.sh up` (or `make services-up`): it starts the broker with its SASL_SSL and SSL "
    "listeners and Redis with its TLS port, and restarts ones an older services.sh started"
)
OPENSSL_TIMEOUT_S = 30.0


def _env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def _properties(path: Path) -> dict[str, str]:
    return {k: v for k, v in _env_file(path).items() if "." in k}


def port_answers(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class SecureServices:
    """Where the secure listeners are and how to log in (from the files services.sh writes)."""

    run: Path
    plaintext: str  # host:port of each listener
    sasl_ssl: str
    mtls: str
    scram_password: str
    plain_password: str
    redis_tls_url: str
    redis_username: str
    redis_password: str
    redis_ca: str

    @property
    def tls(self) -> Path:
        return self.run / "kafka" / "tls"

    @property
    def ca(self) -> Path:
        return self.tls / "ca.pem"

    def client_file(self, name: str) -> Path:
        """.run/kafka/client-NAME.properties (scram, scram256, plain, mtls)."""
        return self.run / "kafka" / f"client-{name}.properties"

    def client_properties(self, name: str) -> dict[str, str]:
        return _properties(self.client_file(name))

    def secrets(self) -> list[str]:
        """Every test password: none may appear in any output."""
        return [self.scram_password, self.plain_password, self.redis_password]

    @classmethod
    def load(cls) -> SecureServices:
        """The running services' secure settings; AssertionError naming what is missing otherwise."""
        kafka, redis_env = RUN / "kafka" / "listeners.env", RUN / "redis" / "client.env"
        needed = [
            kafka,
            redis_env,
            RUN / "kafka" / "tls" / "secrets.env",
            *(RUN / "kafka" / f"client-{n}.properties" for n in ("scram", "scram256", "plain", "mtls")),
        ]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise AssertionError(f"missing {', '.join(missing)}: {UP_HINT}")
        listeners = _env_file(kafka)
        secrets = _env_file(RUN / "kafka" / "tls" / "secrets.env")
        redis = _env_file(redis_env)
        services = cls(
            run=RUN,
            plaintext=listeners["KAFKA_PLAINTEXT"],
            sasl_ssl=listeners["KAFKA_SASL_SSL"],
            mtls=listeners["KAFKA_MTLS"],
            scram_password=secrets["SCRAM_PASSWORD"],
            plain_password=secrets["PLAIN_PASSWORD"],
            redis_tls_url=redis["PORTSCAN_STORE"],
            redis_username=redis["PORTSCAN_REDIS_USERNAME"],
            redis_password=Path(redis["PORTSCAN_REDIS_PASSWORD_FILE"]).read_text().strip(),
            redis_ca=redis["PORTSCAN_REDIS_CA"],
        )
        redis_tls = services.redis_tls_url.split("//", 1)[1].split("/", 1)[0]
        for what, address in (
            ("Kafka PLAINTEXT", services.plaintext),
            ("Kafka SASL_SSL", services.sasl_ssl),
            ("Kafka SSL (mTLS)", services.mtls),
            ("Redis TLS", redis_tls),
        ):
            if not port_answers(address):
                raise AssertionError(f"nothing answers on {address} ({what} listener): {UP_HINT}")
        return services


# ------------------------------------------------------------------------------------------ other CA


@dataclass(frozen=True)
class OtherCa:
    """A throwaway CA unrelated to the broker's, and a client certificate it signed."""

    ca: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, timeout=OPENSSL_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr.decode(errors='replace')}"


def other_ca(folder: Path) -> OtherCa:
    """Make, in `folder`, a CA and a client certificate signed by it (EC P-256, PEM), as services.sh does."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    _openssl("genpkey", *ec, "-out", "ca.key", cwd=folder)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/O=elsewhere/CN=some other test CA",
        "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem", cwd=folder,
    )  # fmt: skip
    _openssl("genpkey", *ec, "-out", "client.key", cwd=folder)
    _openssl("req", "-new", "-key", "client.key", "-subj", "/CN=rogue", "-out", "client.csr", cwd=folder)
    (folder / "client.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "0x5eed",
        "-days", "30", "-extfile", "client.ext", "-out", "client.pem", cwd=folder,
    )  # fmt: skip
    return OtherCa(folder / "ca.pem", folder / "client.pem", folder / "client.key")


# ------------------------------------------------------------------------------------------ commands


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_to_exit(args: Sequence[str], env: dict[str, str], cwd: Path, log: Path, limit: float) -> Outcome:
    """`iis-portscan ARGS` that must end by itself within `limit` seconds; its output goes to `log` too."""
    with log.open("ab") as fh:
        fh.write(f"\n===== {time.strftime('%X')} iis-portscan {' '.join(args)} (must exit)\n".encode())
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "streams", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = ((exc.stdout or b"") + (exc.stderr or b"")).decode(errors="replace")
        raise AssertionError(
            f"iis-portscan {args[0]} still ran {limit:.0f}s after start; its output:\n{partial[-3000:]}"
        ) from None
    out = Outcome(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        time.monotonic() - t0,
    )
    with log.open("ab") as fh:
        fh.write(f"{out.output}\n===== exit {out.code} after {out.seconds:.1f}s\n".encode())
    return out


def ps_listing() -> str:
    """What `ps` shows of every process's command line (no environment)."""
    done = subprocess.run(["ps", "-eo", "pid,args", "ww"], capture_output=True, timeout=30, check=False)
    return done.stdout.decode(errors="replace")


def cmdline(pid: int) -> str:
    """The process's argv as the kernel exposes it to everyone (/proc/PID/cmdline)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


# ------------------------------------------------------------------------------------------ OAUTHBEARER


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class JwtIssuer:
    """An OIDC issuer for tests, with openssl only: an RSA key, its JWKS, RS256-signed access tokens."""

    def __init__(self, folder: Path, issuer: str, audience: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.key = folder / "jwt.key"
        self.issuer, self.audience = issuer, audience
        _openssl(
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(self.key),
            cwd=folder,
        )
        done = subprocess.run(
            ["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"],
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_S,
            check=True,
        )
        self.modulus = bytes.fromhex(done.stdout.decode().strip().split("=", 1)[1])
        self.kid = b64url(hashlib.sha256(self.modulus).digest()[:12])

    def jwks(self) -> dict[str, Any]:
        key = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64url(self.modulus),
            "e": "AQAB",
        }
        return {"keys": [key]}

    def token(self, subject: str, lifetime_s: int = 3600) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now - 60,
            "exp": now + lifetime_s,
            "scope": "kafka",
        }
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_S,
            check=True,
        )
        return f"{signing_input}.{b64url(done.stdout)}"


class OidcServer:
    """A loopback HTTP server with the issuer's JWKS (GET /jwks) and a client-credentials token endpoint
    (POST /token, HTTP basic auth with `client_id`/`client_secret`); counts the tokens it gave."""

    def __init__(self, issuer: JwtIssuer, client_id: str, client_secret: str) -> None:
        self.issuer = issuer
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens_issued = 0
        self.refused = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/jwks":
                    self.reply(200, server.issuer.jwks())
                else:
                    self.reply(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                if self.path != "/token" or form.get("grant_type") != ["client_credentials"]:
                    self.reply(400, {"error": "invalid_request"})
                    return
                if not server.authorized(self.headers.get("Authorization", ""), form):
                    server.refused += 1
                    self.reply(401, {"error": "invalid_client"})
                    return
                server.tokens_issued += 1
                token = server.issuer.token(server.client_id)
                self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="oidc-server", daemon=True)

    def authorized(self, header: str, form: dict[str, list[str]]) -> bool:
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            given = (urllib.parse.unquote(user), urllib.parse.unquote(password))
        else:  # client_secret_post
            given = (form.get("client_id", [""])[0], form.get("client_secret", [""])[0])
        return given == (self.client_id, self.client_secret)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OidcServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


class OAuthKafka(PrivateKafka):
    """A private broker (private_services.PrivateKafka) with one more listener, OAUTH: SASL_SSL with
    OAUTHBEARER only, validating tokens against a JWKS endpoint (Kafka 4 fetches only URLs allowed by the
    system property org.apache.kafka.sasl.oauthbearer.allowed.urls), TLS from services.sh's material."""

    def __init__(self, folder: Path, tls: Path, jwks_url: str, issuer: str, audience: str) -> None:
        super().__init__(folder)
        self.oauth_port = free_ports(1)[0]
        while self.oauth_port in (self.port, self.controller_port):
            self.oauth_port = free_ports(1)[0]
        self.jwks_url = jwks_url
        text = self.properties.read_text()
        plain, controller = f"PLAINTEXT://{HOST}:{self.port}", f"CONTROLLER://{HOST}:{self.controller_port}"
        oauth = f"OAUTH://{HOST}:{self.oauth_port}"
        for old, new in (
            (f"listeners={plain},{controller}\n", f"listeners={plain},{controller},{oauth}\n"),
            (f"advertised.listeners={plain}\n", f"advertised.listeners={plain},{oauth}\n"),
            (
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,OAUTH:SASL_SSL\n",
            ),
        ):
            assert old in text, f"private_services' server.properties changed: no {old.strip()!r}"
            text = text.replace(old, new)
        validator = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
        text += f"""\
ssl.keystore.type=PEM
ssl.keystore.location={tls / "server-keystore.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={tls / "ca.pem"}
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=\
org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.oauth.oauthbearer.sasl.server.callback.handler.class={validator}
sasl.oauthbearer.jwks.endpoint.url={jwks_url}
sasl.oauthbearer.expected.issuer={issuer}
sasl.oauthbearer.expected.audience={audience}
"""
        self.properties.write_text(text)

    @property
    def oauth_address(self) -> str:
        return f"{HOST}:{self.oauth_port}"

    def _java(self, main: str, *args: str) -> list[str]:
        argv = super()._java(main, *args)
        return [argv[0], f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.jwks_url}", *argv[1:]]


@contextmanager
def oauth_kafka(folder: Path, tls: Path, jwks_url: str, issuer: str, audience: str) -> Iterator[OAuthKafka]:
    """A started OAuthKafka; stopped and its folder removed when the block ends."""
    broker = OAuthKafka(folder, tls, jwks_url, issuer, audience)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
