"""Secrets never echoed (issue 23, item 8): a malformed Kafka client property line names its source and line,
never its text; Settings' repr redacts the Redis password and the Kafka client property values."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main
from streams.errors import JobError
from streams.kafka.client_config import kafka_client
from streams.settings import Settings

SECRET = "Hunter2-s3cret"


def error_of(environ: dict[str, str]) -> str:
    """The message of the error loading these settings and their Kafka client properties gives."""
    try:
        kafka_client(Settings.load(None, environ))
    except JobError as exc:
        return str(exc)
    raise AssertionError("no error")


def test_a_malformed_variable_line_names_the_line_not_the_text() -> None:
    message = error_of({"PORTSCAN_KAFKA_CONFIG": f"security.protocol=SASL_SSL\n\nsasl.password: {SECRET}"})
    assert SECRET not in message
    assert "PORTSCAN_KAFKA_CONFIG" in message and "line 3" in message


def test_a_value_on_the_next_line_of_a_properties_file_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(f"security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.password=\n{SECRET}\n")
    message = error_of({"PORTSCAN_KAFKA_CONFIG_FILE": str(path)})
    assert SECRET not in message
    assert f"{path}:4" in message


def test_a_malformed_flag_names_the_flag_not_the_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["topics", "create", "--kafka-config", "security.protocol=SASL_SSL",
              "--kafka-config", f"sasl.password {SECRET}"])  # fmt: skip
    err = capsys.readouterr().err
    assert SECRET not in err and "--kafka-config" in err and "value 2" in err


def test_settings_repr_redacts_every_secret() -> None:
    settings = Settings.load(
        None,
        {
            "PORTSCAN_STORE": f"rediss://portscan:{SECRET}-url@redis:6380/0",
            "PORTSCAN_REDIS_PASSWORD": SECRET,
            "PORTSCAN_KAFKA_CONFIG": f"sasl.password={SECRET}\nsasl.oauthbearer.client.secret={SECRET}",
        },
    )
    text = repr(settings)
    assert SECRET not in text
    assert "sasl.password=<redacted>" in text and "redis_password='<redacted>'" in text
    assert "rediss://portscan:<redacted>@redis:6380/0" in text
    assert "threshold=30" in text and "app_id='iis-portscan'" in text  # the rest is shown
    assert SECRET not in str(settings)
