"""Kafka client properties (librdkafka names): loading, references, validation, mapping onto faust."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest

from streams.kafka.client_config import ClientConfigError, KafkaClientConfig, kafka_client, parse_properties
from streams.settings import Settings


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_properties_file_comments_separators_and_continuations(tmp_path: Path) -> None:
    text = (
        "# comment\n! also\nsecurity.protocol = SASL_SSL\nsasl.mechanism: scram-sha-512\n\n"
        "sasl.username=u\\\n  ser\n"
    )
    assert parse_properties(text, "f") == [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "scram-sha-512"),
        ("sasl.username", "user"),
    ]


def test_scram_over_tls_with_references(tmp_path: Path) -> None:
    secret = write(tmp_path, "password", "s3cret\n")
    path = write(
        tmp_path,
        "client.properties",
        "security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=${env:KUSER}\n"
        f"sasl.password=${{file:{secret}}}\nssl.endpoint.identification.algorithm=none\n",
    )
    config = KafkaClientConfig.load(path, environ={"KUSER": "alice"})
    assert config.librdkafka() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "none",
    }
    assert (
        "s3cret" not in repr(config)
        and config.scrub("auth failed for s3cret") == "auth failed for <redacted>"
    )
    creds = config.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL"  # faust: SASL without an SSL context would be SASL_PLAINTEXT
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.ssl_context is not None
    assert creds.ssl_context.check_hostname is False


def test_command_line_pairs_override_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, "c.properties", "security.protocol=SASL_PLAINTEXT\nsasl.username=a\nsasl.password=b\n"
    )
    config = KafkaClientConfig.load(path, ["sasl.username=c", "sasl.mechanism=PLAIN"], environ={})
    assert config.props["sasl.username"] == "c"
    creds = config.faust_credentials()
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.mechanism.value == "PLAIN"


def test_event_hubs_connection_string_password_is_kept_whole() -> None:
    cs = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=abc=="
    config = KafkaClientConfig.load(
        None,
        [
            "security.protocol=SASL_SSL",
            "sasl.mechanism=PLAIN",
            "sasl.username=$ConnectionString",
            "sasl.password=${env:EH}",
        ],
        environ={"EH": cs},
    )
    assert config.props["sasl.password"] == cs and config.props["sasl.username"] == "$ConnectionString"


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (
            ["sasl.kerberos.service.name=kafka"],
            "unsupported Kafka client property 'sasl.kerberos.service.name'",
        ),
        (["bootstrap.servers=x:9092"], "--brokers"),
        (["security.protocol=SASL_SSL", "sasl.mechanism=GSSAPI"], "sasl.mechanism='GSSAPI' is not supported"),
        (["security.protocol=SASL_SSL", "sasl.mechanism=PLAIN", "sasl.username=u"], "needs sasl.password"),
        (["ssl.ca.location=/x"], "security.protocol is PLAINTEXT"),
        (["security.protocol=SSL", "ssl.ca.location=/nonexistent/ca.pem"], "no such file"),
        (["security.protocol=SASL_SSL", "sasl.mechanism=OAUTHBEARER"], "needs sasl.oauthbearer.method"),
        (["security.protocol=SASL_SSL", "sasl.password=${env:NOPE}"], "environment variable NOPE is not set"),
        (["sasl.password"], "KEY=VALUE"),
    ],
)
def test_refused_with_a_message_naming_the_property(pairs: list[str], message: str) -> None:
    with pytest.raises(ClientConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        KafkaClientConfig.load(None, pairs, environ={})


def test_secret_value_never_in_a_refusal() -> None:
    with pytest.raises(ClientConfigError) as info:
        KafkaClientConfig.load(None, ["security.protocol=SASL_SSL", "sasl.mechanism=hunter2"], environ={})
    assert "HUNTER2" in str(info.value)  # not a secret key: named (upper-cased, as librdkafka reads it)
    with pytest.raises(ClientConfigError) as info:
        KafkaClientConfig.load(None, ["sasl.password=hunter2"], environ={})
    assert "hunter2" not in str(info.value)


def test_mtls_context_loads_the_client_certificate(tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=test",
        ],
        check=True,
        capture_output=True,
    )
    config = KafkaClientConfig.load(
        None,
        [
            "security.protocol=SSL",
            f"ssl.ca.location={cert}",
            f"ssl.certificate.location={cert}",
            f"ssl.key.location={key}",
        ],
        environ={},
    )
    creds = config.faust_credentials()
    assert isinstance(creds, faust.SSLCredentials) and isinstance(creds.context, ssl.SSLContext)
    assert creds.context.check_hostname is True  # librdkafka's default: https


def test_settings_take_the_file_and_repeated_pairs(tmp_path: Path) -> None:
    path = write(tmp_path, "c.properties", "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n")
    settings = Settings.load(
        None,
        {
            "PORTSCAN_KAFKA_CONFIG_FILE": path,
            "PORTSCAN_KAFKA_CONFIG": "sasl.username=u\nsasl.password=${env:PW}",
            "PW": "p;w=",
        },
    )
    # ${env:} references read the process environment
    with pytest.raises(ClientConfigError, match="PW is not set"):
        kafka_client(settings)
    assert settings.kafka_config == ("sasl.username=u", "sasl.password=${env:PW}")
