"""streams.kafka.diagnosis: the named checks that turn librdkafka's texts into one line naming the cause
(the whole path against real listeners: tests/integration/test_secure.py)."""

from __future__ import annotations

import pytest

from streams.errors import AuthError
from streams.kafka.client_config import ClientConfigError, KafkaClientConfig
from streams.kafka.diagnosis import REPEATS, Diagnosis

SASL = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "job"}


def diagnosis(props: dict[str, str], *texts: str) -> Diagnosis:
    found = Diagnosis(KafkaClientConfig(props), "Kafka at b:9093")
    for text in texts:
        found.log(3, "%s", text)
    return found


def test_nothing_seen_or_only_an_outage_is_no_cause() -> None:
    assert diagnosis(SASL).cause() is None
    assert diagnosis(SASL, "Connect to ipv4#127.0.0.1:9093 failed: Connection refused").cause() is None


def test_refused_credentials_name_the_mechanism_and_user() -> None:
    text = "SASL authentication error: Authentication failed during authentication (after 5ms in state X)"
    found = diagnosis(SASL, "noise", text).cause()
    assert isinstance(found, AuthError)
    assert str(found) == (
        "Kafka at b:9093: authentication failed (SASL SCRAM-SHA-512, user 'job'): Authentication failed "
        "during authentication; check sasl.username and sasl.password"
    )


def test_an_unverified_broker_certificate_names_the_ca_file() -> None:
    props = {"security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}
    found = diagnosis(
        props, "SSL handshake failed: certificate verify failed: unable to get issuer, x"
    ).cause()
    assert isinstance(found, AuthError) and "ssl.ca.location (/ca.pem)" in str(found)
    assert "(unable to get issuer)" in str(found)


@pytest.mark.parametrize(
    ("props", "hint"),
    [
        ({"security.protocol": "SSL"}, "set ssl.certificate.location"),
        (
            {"security.protocol": "SSL", "ssl.certificate.location": "/c.pem", "ssl.key.location": "/k.pem"},
            "rejected our client certificate (ssl.certificate.location=/c.pem)",
        ),
    ],
)
def test_a_client_certificate_alert_says_what_is_missing_or_refused(props: dict[str, str], hint: str) -> None:
    found = diagnosis(props, "SSL handshake failed: ssl/tls alert certificate required").cause()
    assert isinstance(found, AuthError) and hint in str(found)


def test_tls_to_a_plaintext_port_is_found_at_once() -> None:
    found = diagnosis({"security.protocol": "SSL"}, "SSL handshake failed: wrong version number").cause()
    assert isinstance(found, ClientConfigError) and "TLS spoken to a plaintext port" in str(found)
    assert diagnosis({}, "SSL handshake failed: wrong version number").cause() is None  # not our TLS


@pytest.mark.parametrize(
    ("props", "text", "words"),
    [
        (
            {},
            "Connection closed by peer (after 1ms in state APIVERSION_QUERY)",
            "a TLS port spoken in plaintext",
        ),
        ({}, "Disconnected: closed by peer (after 9ms in state UP)", "does the listener require SASL"),
    ],
)
def test_counted_symptoms_are_the_cause_only_when_they_repeat(
    props: dict[str, str], text: str, words: str
) -> None:
    """A broker going away closes a connection once; a listener that wants TLS or SASL every time."""
    found = diagnosis(props, *[text] * (REPEATS - 1))
    assert found.cause() is None
    assert found.cause() is None  # counted afresh at each look, not across looks
    found.log(3, "%s", text)
    cause = found.cause()
    assert isinstance(cause, ClientConfigError) and words in str(cause)


def test_the_first_cause_in_order_of_the_texts_wins() -> None:
    found = diagnosis(
        {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "ssl.ca.location": "/ca.pem"},
        "SASL handshake: mechanism handshake failed: Broker: Unsupported SASL mechanism",
        "SASL authentication error: Authentication failed",
    ).cause()
    assert isinstance(found, ClientConfigError)
    assert str(found) == (
        "Kafka at b:9093: the listener does not accept sasl.mechanism=PLAIN: "
        "Broker: Unsupported SASL mechanism"
    )
