"""Start-up diagnosis: reach Kafka, and when waiting cannot help say why in one line.

librdkafka reports a refused credential, an unverified certificate or a protocol that does not match
the listener only through its error callback and its log, as text, and then retries forever. Those
texts are captured here (never printed) and read by named checks, each a function of one text that
returns the error to raise or None; two of them count (a symptom that a broker shutting down may show
once, a wrong port every time). Every message is scrubbed of the configured secrets before it is raised.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streams.errors import AuthError, JobError, ServiceUnreachable
from streams.kafka.client_config import ClientConfigError, KafkaClientConfig, kafka_client
from streams.settings import Settings

REPEATS = 3  # a counted symptom seen this often is the cause, not a broker going away once

_TOKEN_REFUSED = re.compile(r"Failed to retrieve OIDC token from \S+ (.*\((40[013])\))")
_CLIENT_CERT_ALERT = re.compile(
    r"alert (bad certificate|unknown ca|certificate required|certificate unknown|"
    r"certificate expired|certificate revoked|unsupported certificate|access denied)"
)
_NO_TLS_ANSWER = re.compile(
    r"PLAINTEXT broker listener|wrong version number|packet length too long|record layer failure"
)
_CLOSED_AT_FIRST_REQUEST = re.compile(r"closed by peer.*in state APIVERSION_QUERY")
_CLOSED_AFTER_FIRST_REQUEST = re.compile(r"closed by peer.*in state UP")


def detail(text: str, after: str) -> str:
    """librdkafka's reason after `after`, without its "(after 3ms in state X)" tail."""
    text = text.split(after, 1)[-1].strip(" :") if after else text
    return re.sub(r"\s*\(after \d+ms in state \w+\)\s*$", "", text)


@dataclass
class Diagnosis:
    """What librdkafka said while we waited for Kafka at `where`, and the checks that read it."""

    client: KafkaClientConfig
    where: str
    seen: list[str] = field(default_factory=list)  # librdkafka's error and log texts, oldest first
    counted: Counter[str] = field(default_factory=Counter)  # counted symptoms, within one `cause()`

    @property
    def props(self) -> Mapping[str, str]:
        return self.client.props

    def log(self, _level: int, fmt: str, *args: object) -> None:
        """librdkafka's `logger`: keeps its lines instead of printing one per retry."""
        self.seen.append(fmt % args if args else fmt)

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's `error_cb`."""
        self.seen.append(error.str())

    def cause(self) -> JobError | None:
        """The first thing seen that retrying cannot fix, as the error to raise."""
        self.counted.clear()
        for text in self.seen:
            for check in self.checks():
                found = check(text)
                if found is not None:
                    return found
        return None

    def checks(self) -> tuple[Callable[[str], JobError | None], ...]:
        """In the order they are tried on each text."""
        return (
            self.sasl_refused,
            self.token_refused,
            self.mechanism_refused,
            self.certificate_unverified,
            self.client_certificate_refused,
            self.tls_to_plaintext_port,
            self.plaintext_to_tls_port,
            self.sasl_required,
        )

    def repeated(self, symptom: str) -> bool:
        """Count a symptom; True once it was seen REPEATS times within this `cause()`."""
        self.counted[symptom] += 1
        return self.counted[symptom] >= REPEATS

    # ------------------------------------------------------------------ the checks

    def sasl_refused(self, text: str) -> JobError | None:
        """The broker refused our SASL credentials (or, with OAUTHBEARER, the token)."""
        if "SASL authentication error" not in text:
            return None
        reason, mechanism = detail(text, "SASL authentication error"), self.client.mechanism
        if mechanism == "OAUTHBEARER":
            endpoint = self.props["sasl.oauthbearer.token.endpoint.url"]
            how = f"OAUTHBEARER): the broker refused the token from {endpoint}: {reason}"
        else:
            user = self.props.get("sasl.username", "")
            how = f"{mechanism}, user {user!r}): {reason}; check sasl.username and sasl.password"
        return AuthError(f"{self.where}: authentication failed (SASL {how}")

    def token_refused(self, text: str) -> JobError | None:
        """The token endpoint refused our client credentials (not an outage: 400, 401, 403)."""
        token = _TOKEN_REFUSED.search(text)
        if token is None:
            return None
        return AuthError(
            f"{self.where}: authentication failed (SASL OAUTHBEARER): the token endpoint "
            f"{self.props['sasl.oauthbearer.token.endpoint.url']} refused client id "
            f"{self.props['sasl.oauthbearer.client.id']!r}: {token.group(1)}; check "
            "sasl.oauthbearer.client.id and sasl.oauthbearer.client.secret"
        )

    def mechanism_refused(self, text: str) -> JobError | None:
        """The listener does not offer our sasl.mechanism."""
        if "SASL" not in text or "mechanism handshake failed" not in text:
            return None
        return ClientConfigError(
            f"{self.where}: the listener does not accept sasl.mechanism={self.client.mechanism}: "
            f"{detail(text, 'mechanism handshake failed')}"
        )

    def certificate_unverified(self, text: str) -> JobError | None:
        """The broker's certificate does not verify against ssl.ca.location (unknown CA, wrong host)."""
        if "certificate verify failed" not in text:
            return None
        ca = self.props.get("ssl.ca.location", "the system's CA certificates")
        return AuthError(
            f"{self.where}: TLS certificate verify failed: the broker's certificate is not signed by a CA "
            f"in ssl.ca.location ({ca}) (unknown CA) or does not name the host "
            f"({detail(text, 'certificate verify failed').split(',')[0]})"
        )

    def client_certificate_refused(self, text: str) -> JobError | None:
        """The broker wants a client certificate, or does not trust ours."""
        alert = _CLIENT_CERT_ALERT.search(text)
        if alert is None:
            return None
        if "ssl.certificate.location" not in self.props:
            return AuthError(
                f"{self.where}: the broker requires a client certificate (TLS alert {alert.group(1)}): "
                "set ssl.certificate.location and ssl.key.location"
            )
        return AuthError(
            f"{self.where}: the broker rejected our client certificate "
            f"(ssl.certificate.location={self.props['ssl.certificate.location']}): TLS alert "
            f"{alert.group(1)}: it does not trust the certificate's issuer, or it expired"
        )

    def tls_to_plaintext_port(self, text: str) -> JobError | None:
        """We speak TLS; the port answers in plaintext."""
        if not self.client.uses_tls or not _NO_TLS_ANSWER.search(text):
            return None
        return ClientConfigError(
            f"{self.where}: TLS spoken to a plaintext port (security.protocol={self.client.protocol}, but "
            "the TLS handshake got no TLS answer): use the broker's TLS listener, or PLAINTEXT/SASL_PLAINTEXT"
        )

    def plaintext_to_tls_port(self, text: str) -> JobError | None:
        """We speak plaintext; the port closes at our first request (counted: a broker shutting down
        may do it once, a TLS port does it every time)."""
        if self.client.uses_tls or not (
            "connecting to a SSL listener" in text or _CLOSED_AT_FIRST_REQUEST.search(text)
        ):
            return None
        if not self.repeated("plaintext_closed"):
            return None
        return ClientConfigError(
            f"{self.where}: the broker closed the connection at our first request: a TLS port spoken "
            f"in plaintext? (security.protocol={self.client.protocol}): use SSL or SASL_SSL with "
            "ssl.ca.location as the listener requires"
        )

    def sasl_required(self, text: str) -> JobError | None:
        """Without SASL, the broker answered ApiVersions and then dropped an unauthenticated request
        (counted, as above)."""
        if self.client.mechanism is not None or not _CLOSED_AFTER_FIRST_REQUEST.search(text):
            return None
        if not self.repeated("sasl_expected"):
            return None
        return ClientConfigError(
            f"{self.where}: the broker closes the connection after our first request: does the "
            f"listener require SASL? (security.protocol={self.client.protocol}): use SASL_SSL or "
            "SASL_PLAINTEXT with sasl.mechanism, sasl.username and sasl.password"
        )


def reach_kafka(settings: Settings) -> None:
    """Wait up to --connect-timeout for the brokers to answer a metadata request; stop at once, with
    one line naming the cause, when a check of `Diagnosis` finds that waiting cannot help."""
    client = kafka_client(settings)
    diagnosis = Diagnosis(client, f"Kafka at {settings.brokers}")
    seconds = settings.connect_timeout / 1000
    admin_client = AdminClient(
        {
            **client.librdkafka(),
            "bootstrap.servers": settings.brokers,
            "socket.timeout.ms": 10_000,
            "logger": diagnosis,  # type: ignore[dict-item]
            "log_level": 6,
            "error_cb": diagnosis.on_error,  # type: ignore[dict-item]
        }
    )
    deadline = time.monotonic() + seconds
    reason = "no answer"
    while True:
        try:
            admin_client.list_topics(timeout=max(0.05, min(0.5, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            reason = error.str() if isinstance(error, KafkaError) else str(error)
        admin_client.poll(0)  # serves the error callback and the log lines
        found = diagnosis.cause()
        if found is not None:
            raise type(found)(client.scrub(str(found))) from None
        if time.monotonic() >= deadline:
            break
    last = next((t for t in reversed(diagnosis.seen) if "brokers are down" not in t), reason)
    last = re.sub(r"^\w+ \[rdkafka#\S+\] \[thrd:[^\]]*\]: ", "", last)  # a log line's prefix
    raise ServiceUnreachable(
        client.scrub(f"cannot reach Kafka at {settings.brokers} within {seconds:g}s ({detail(last, '')})")
    ) from None
