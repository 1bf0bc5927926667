"""One Kafka client configuration for every client of the project, in librdkafka property names.

librdkafka's names are the ecosystem's common language (kcat `-X`, Fluent Bit `rdkafka.*`, Vector
`librdkafka_options`), so a team pastes the properties it already has. They go as they are to our
confluent-kafka clients (producers, admin, the `alerts` follower), and are mapped here onto faust's
credentials and an SSL context for the worker's aiokafka consumer. Keys we cannot honour on both
sides are refused by name rather than ignored: a silently dropped `ssl.ca.location` would be a
security bug.

Secrets need not be on the command line: any value may be `${env:NAME}` (an environment variable) or
`${file:/path}` (a mounted file, trailing newline dropped). `redacted()` and `secrets()` keep them
out of every log line and error.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.errors import JobError
from streams.settings import REDACTED, Settings, pair_problem


class ClientConfigError(JobError):
    """A Kafka client property we cannot use; the message names the property, never a secret."""


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
# property -> allowed values (None: any string)
SUPPORTED: dict[str, tuple[str, ...] | None] = {
    "security.protocol": SECURITY_PROTOCOLS,
    "sasl.mechanism": SASL_MECHANISMS,
    "sasl.username": None,
    "sasl.password": None,
    "sasl.oauthbearer.method": ("oidc",),
    "sasl.oauthbearer.token.endpoint.url": None,
    "sasl.oauthbearer.client.id": None,
    "sasl.oauthbearer.client.secret": None,
    "sasl.oauthbearer.scope": None,
    "ssl.ca.location": None,
    "ssl.certificate.location": None,
    "ssl.key.location": None,
    "ssl.key.password": None,
    "ssl.endpoint.identification.algorithm": ("https", "none"),
    "client.id": None,
}
ALIASES = {"sasl.mechanisms": "sasl.mechanism"}  # librdkafka accepts both spellings
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret"})
CASE_INSENSITIVE = frozenset({"security.protocol", "sasl.mechanism"})
_REFERENCE = re.compile(r"\$\{(env|file):([^}]*)\}")


def parse_properties(text: str, source: str) -> list[tuple[str, str]]:
    """Java-style `.properties`: `key=value` or `key: value`, `#`/`!` comments, `\\` continuations."""
    pairs: list[tuple[str, str]] = []
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)", line) or re.match(r"(\S+)\s+(.*)", line)
        if match is None:  # the line is not shown: it may be a secret (a value put on a line of its own)
            raise ClientConfigError(f"{source}:{number}: expected key=value (the line is not shown)")
        pairs.append((match.group(1), match.group(2)))
    return pairs


def parse_pair(text: str, where: str = "--kafka-config") -> tuple[str, str]:
    """`KEY=VALUE` from the command line or the environment; `where` names it in an error."""
    problem = pair_problem(text)
    if problem is not None:
        raise ClientConfigError(f"{where}: {problem}")
    key, _, value = text.partition("=")
    return key.strip(), value.strip()


def _resolve(key: str, value: str, environ: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        kind, ref = match.groups()
        if kind == "env":
            if ref not in environ:
                raise ClientConfigError(f"{key}: environment variable {ref} is not set")
            return environ[ref]
        try:
            with open(ref, encoding="utf-8") as fh:
                return fh.read().rstrip("\r\n")
        except OSError as exc:
            raise ClientConfigError(f"{key}: cannot read {ref}: {exc.strerror}") from None

    return _REFERENCE.sub(one, value)


@dataclass(frozen=True)
class KafkaClientConfig:
    """Validated, resolved client properties (librdkafka names)."""

    props: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        file: str | None = None,
        pairs: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> KafkaClientConfig:
        """The file's properties, then each KEY=VALUE (later ones win); references resolved."""
        env = os.environ if environ is None else environ
        items: list[tuple[str, str]] = []
        if file:
            try:
                with open(file, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise ClientConfigError(f"--kafka-config-file: cannot read {file}: {exc.strerror}") from None
            items += parse_properties(text, file)
        items += [parse_pair(p, f"--kafka-config value {n}") for n, p in enumerate(pairs, 1)]
        props: dict[str, str] = {}
        for raw_key, raw_value in items:
            key = ALIASES.get(raw_key, raw_key)
            if key == "bootstrap.servers":
                raise ClientConfigError(
                    "bootstrap.servers: give the brokers with --brokers / PORTSCAN_BROKERS"
                )
            if key not in SUPPORTED:
                raise ClientConfigError(
                    f"unsupported Kafka client property {raw_key!r}; supported: {', '.join(SUPPORTED)}"
                )
            value = _resolve(key, raw_value, env)
            allowed = SUPPORTED[key]
            if key in CASE_INSENSITIVE:
                value = value.upper()
            if allowed is not None and value not in allowed:
                shown = REDACTED if key in SECRET_KEYS else repr(value)
                raise ClientConfigError(f"{key}={shown} is not supported; use one of {', '.join(allowed)}")
            props[key] = value
        config = cls(props)
        config._check()
        return config

    # ------------------------------------------------------------------ reading

    @property
    def protocol(self) -> str:
        return self.props.get("security.protocol", "PLAINTEXT")

    @property
    def mechanism(self) -> str | None:
        return self.props.get("sasl.mechanism", "PLAIN") if self.protocol.startswith("SASL") else None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def _check(self) -> None:
        p = self.props
        has = p.__contains__
        if not self.uses_tls:
            tls = [k for k in p if k.startswith("ssl.")]
            if tls:
                raise ClientConfigError(
                    f"{', '.join(tls)} set but security.protocol is {self.protocol}: use SSL or SASL_SSL"
                )
        mechanism = self.mechanism
        if mechanism is None:
            sasl = [k for k in p if k.startswith("sasl.")]
            if sasl:
                raise ClientConfigError(
                    f"{', '.join(sasl)} set but security.protocol is {self.protocol}: "
                    "use SASL_SSL or SASL_PLAINTEXT"
                )
        elif mechanism == "OAUTHBEARER":
            needed = (
                "sasl.oauthbearer.method",
                "sasl.oauthbearer.token.endpoint.url",
                "sasl.oauthbearer.client.id",
                "sasl.oauthbearer.client.secret",
            )
            missing = [k for k in needed if not has(k)]
            if missing:
                raise ClientConfigError(f"sasl.mechanism=OAUTHBEARER needs {', '.join(missing)}")
            from streams.kafka.oauth import endpoint_problem

            problem = endpoint_problem(p["sasl.oauthbearer.token.endpoint.url"])
            if problem is not None:
                raise ClientConfigError(f"sasl.oauthbearer.token.endpoint.url {problem}")
        else:
            missing = [k for k in ("sasl.username", "sasl.password") if not has(k)]
            if missing:
                raise ClientConfigError(f"sasl.mechanism={mechanism} needs {', '.join(missing)}")
        if has("ssl.certificate.location") != has("ssl.key.location"):
            raise ClientConfigError("ssl.certificate.location and ssl.key.location go together")
        for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
            if has(key) and not os.path.isfile(p[key]):
                raise ClientConfigError(f"{key}: no such file: {p[key]}")

    def librdkafka(self) -> dict[str, str]:
        """The properties for a confluent-kafka client (add bootstrap.servers and the client's own)."""
        return dict(self.props)

    def secrets(self) -> list[str]:
        """Secret values, to be scrubbed from any text we print."""
        return [v for k, v in self.props.items() if k in SECRET_KEYS and v]

    def redacted(self) -> dict[str, str]:
        return {k: REDACTED if k in SECRET_KEYS else v for k, v in self.props.items()}

    def scrub(self, text: str) -> str:
        """`text` with every secret value replaced (for error messages from client libraries)."""
        for secret in self.secrets():
            text = text.replace(secret, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"KafkaClientConfig({self.redacted()!r})"

    # ------------------------------------------------------------------ aiokafka / faust

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context librdkafka would build from the same properties (None without TLS)."""
        if not self.uses_tls:
            return None
        p = self.props
        try:
            context = ssl.create_default_context(cafile=p.get("ssl.ca.location"))
            if "ssl.certificate.location" in p:
                context.load_cert_chain(
                    p["ssl.certificate.location"], p["ssl.key.location"], p.get("ssl.key.password")
                )
        except (ssl.SSLError, OSError) as exc:
            raise ClientConfigError(f"TLS settings: {self.scrub(str(exc))}") from None
        if p.get("ssl.endpoint.identification.algorithm", "https") == "none":
            context.check_hostname = False
        return context

    def faust_credentials(self) -> Any:
        """faust's credentials for the worker's consumer and producer (None for PLAINTEXT).

        faust's SASLCredentials without an SSL context means SASL_PLAINTEXT, so the context goes in
        whenever the protocol is SASL_SSL."""
        import faust

        context = self.ssl_context()
        mechanism = self.mechanism
        if mechanism is None:
            return None if context is None else faust.SSLCredentials(context)
        if mechanism == "OAUTHBEARER":
            from streams.kafka.oauth import OidcTokenProvider

            provider = OidcTokenProvider(
                self.props["sasl.oauthbearer.token.endpoint.url"],
                self.props["sasl.oauthbearer.client.id"],
                self.props["sasl.oauthbearer.client.secret"],
                self.props.get("sasl.oauthbearer.scope"),
            )
            return faust.OAuthCredentials(oauth_cb=provider, ssl_context=context)
        return faust.SASLCredentials(
            username=self.props["sasl.username"],
            password=self.props["sasl.password"],
            ssl_context=context,
            mechanism=mechanism,
        )


def kafka_client(settings: Settings) -> KafkaClientConfig:
    """The Kafka client properties of every client, from --kafka-config-file and --kafka-config
    (raises ClientConfigError, naming the key)."""
    return KafkaClientConfig.load(settings.kafka_config_file or None, settings.kafka_config)


def librdkafka_client(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A confluent-kafka client's configuration: the properties, the brokers, then `extra`."""
    return {**kafka_client(settings).librdkafka(), "bootstrap.servers": settings.brokers, **extra}
