"""docker-compose.yml parses, names its services, and sets only variables the code reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings

pytestmark = pytest.mark.contract
ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "redis", "worker"}
    assert services["kafka"]["image"] == "apache/kafka:4.0.2"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_worker_environment_is_read_by_settings() -> None:
    worker = compose()["services"]["worker"]
    known = {Settings.env_name(n) for n in Settings.names()}
    env = worker["environment"]
    assert set(env) <= known, f"variables the code does not read: {sorted(set(env) - known)}"
    loaded = Settings.load(None, {k: str(v) for k, v in env.items()})
    assert loaded.brokers == "kafka:19092"
    assert loaded.bin == 600_000 and loaded.threshold == 30


def test_worker_image_builds_from_the_dockerfile() -> None:
    build = compose()["services"]["worker"]["build"]
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["iis-portscan"]' in text
    for env_line in (line for line in text.splitlines() if line.startswith("ENV ")):
        name = env_line.split()[1].split("=")[0]
        assert name in {Settings.env_name(n) for n in Settings.names()}


def test_worker_command_is_a_real_subcommand() -> None:
    from streams.cli import build_parser

    worker = compose()["services"]["worker"]
    args = build_parser().parse_args(worker["command"])
    assert args.command == "worker"


def test_the_image_creates_its_volume_directory_private_to_the_runtime_user() -> None:
    """A VOLUME the image never creates is made root-owned 0755 by Docker: state readable by every user
    (issue 23, items 10 and 11). The image makes it, owned by the user it runs as, mode 0700."""
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    (volume,) = [line for line in final if line.startswith("VOLUME ")]
    (path,) = json.loads(volume.split(None, 1)[1])
    made = [line for line in final if line.startswith("RUN ") and path in line.split()]
    assert made, f"no RUN creates {path}"
    words = made[0].split()
    assert "install" in words and "-d" in words, made[0]
    assert words[words.index("-o") + 1] == user and words[words.index("-m") + 1] == "0700", made[0]
    assert final.index(made[0]) < final.index(f"USER {user}"), "created before switching to the user"
    env = dict(line.split()[1].split("=", 1) for line in final if line.startswith("ENV "))
    assert env["PORTSCAN_DATA_DIR"] == path


def test_published_ports_are_bound_to_loopback() -> None:
    """Kafka (PLAINTEXT) and Redis in the compose file have no authentication: never on every interface."""
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
