"""Kafka over SASL_SSL (SCRAM, PLAIN) and mTLS, Redis over TLS with an ACL user: the test services'
secure listeners (deploy/services.sh; settings in .run/, read by secure_kit.SecureServices).

What the tests pin:
- `iis-portscan worker --brokers <SASL_SSL> --kafka-config-file .run/kafka/client-scram.properties` (and
  PLAIN, and the mTLS listener with client-mtls.properties) ends with the latest revision per AlertId equal
  to `replay`, for events produced in plaintext; no password in its output;
- `topics create` (SCRAM-SHA-256), `produce` and `alerts` (SCRAM-SHA-512) work over SASL_SSL;
- a wrong SCRAM password, an unknown CA, a client certificate the broker rejects, a TLS port spoken in
  plaintext and the plaintext port spoken with TLS each end `worker` (and another command) within 60 s with
  a non-zero exit, one stderr line naming the cause, no traceback, and no password anywhere in the output;
- the worker with `--store rediss://... --redis-ca --redis-username` and the password in
  PORTSCAN_REDIS_PASSWORD equals `replay`, keeps its windows under its prefix, and no password shows in `ps`.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka.admin import AdminClient

from .conftest import KafkaTopics
from .secure_kit import (
    JwtIssuer,
    OidcServer,
    OtherCa,
    SecureServices,
    cmdline,
    oauth_kafka,
    other_ca,
    ps_listing,
    run_to_exit,
)
from .workerkit import (
    Job,
    await_answer,
    expected_view,
    jsonl,
    keyed,
    latest,
    own_topics,
    produce,
    recent_workload,
    values_of,
    view,
)

STARTUP_AND_WORK_S = 90.0  # worker start-up (topics, TLS and SASL handshakes, rebalance) plus processing
FAIL_WITHIN_S = 60.0  # a command that cannot connect ends within this (the issue's bound)
CONNECT_TIMEOUT = "10s"


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def secure(brokers: str) -> SecureServices:
    """The secure listeners of the broker the other tests use (PORTSCAN_BROKERS is its plaintext one)."""
    try:
        services = SecureServices.load()
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
    if services.plaintext != brokers:
        pytest.fail(
            f"PORTSCAN_BROKERS={brokers} but {services.run}/kafka/listeners.env describes the broker on "
            f"{services.plaintext}: point both at the same broker",
            pytrace=False,
        )
    return services


@pytest.fixture(scope="session")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> OtherCa:
    """Another throwaway CA and a client certificate it signed (neither known to the broker)."""
    return other_ca(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture
def job(
    brokers: str, unique_name: str, tmp_path: Path, kafka_admin: AdminClient, kafka_topics: KafkaTopics
) -> Iterator[Job]:
    """The test's job (plaintext address); at the end its workers stop and its topics and groups go."""
    the_job = Job(unique_name, brokers, tmp_path)
    try:
        yield the_job
    finally:
        the_job.close()
        try:
            kafka_topics.track(*own_topics(kafka_admin, the_job.name))
            groups = kafka_admin.list_consumer_groups(request_timeout=10).result(timeout=15)
            kafka_topics.track_group(
                *(g.group_id for g in groups.valid if g.group_id.startswith(the_job.name))
            )
        except Exception as exc:  # cleanup is best effort
            sys.stderr.write(f"could not list topics or groups for cleanup: {exc}\n")
        kafka_topics.track_group(the_job.name, *the_job.groups())
        sys.stderr.write(f"===== job log {the_job.log} (tail)\n{the_job.log_tail()}\n")


def check_no_secret(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{where} holds a password ({secret[:6]}...)"


def properties_file(path: Path, base: dict[str, str], **changes: str) -> Path:
    """A .properties file: `base` with `changes` (keys with `_` for `.`)."""
    props = dict(base)
    props.update({k.replace("_", "."): v for k, v in changes.items()})
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


# ------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("kind", ["scram", "plain", "mtls"])
def test_worker_over_secure_listener_equals_replay(
    kind: str, secure: SecureServices, job: Job, tmp_path: Path
) -> None:
    """The worker on the SASL_SSL listener (SCRAM-SHA-512, PLAIN) or the mTLS listener, with the client file
    services.sh wrote, events produced in plaintext: the latest revisions equal replay; no password in its
    output."""
    records = recent_workload(6_000, seed=31, scan_share=0.2, benign_clients=1_000)
    expected = expected_view(records)
    assert len(expected) >= 3, "the workload should hold several scans"
    env = job.env(input_keyed="true", partitions="2")
    job.cli("topics", "create", env=env)  # plaintext
    produce(job.brokers, job.input_topic, keyed(records))  # plaintext
    alerts = job.reader(job.alert_topic)
    address = secure.mtls if kind == "mtls" else secure.sasl_ssl
    args = (
        "--brokers", address,
        "--kafka-config-file", str(secure.client_file(kind)),
        "--connect-timeout", "30s",
        "--idle-timeout", "3s",
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    with job.worker(*args, env=env) as worker:
        await_answer(
            alerts,
            expected,
            worker.check_alive,
            f"alerts over {kind} == replay",
            closed=False,
            timeout=STARTUP_AND_WORK_S,
        )
    job.check_clean_stop(worker)
    check_no_secret(job.log.read_text(errors="replace"), secure.secrets(), "the worker's output")


def test_topics_produce_and_alerts_over_scram(secure: SecureServices, job: Job, tmp_path: Path) -> None:
    """`topics create` over SCRAM-SHA-256, `produce` and `alerts` over SCRAM-SHA-512 (the worker between
    them on plaintext): the input holds every event and `alerts` prints replay's answer."""
    records = recent_workload(4_000, seed=32, scan_share=0.25, benign_clients=800)
    expected = expected_view(records)
    assert len(expected) >= 3
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(jsonl(records))
    scram = ("--brokers", secure.sasl_ssl, "--kafka-config-file", str(secure.client_file("scram")))
    scram256 = ("--brokers", secure.sasl_ssl, "--kafka-config-file", str(secure.client_file("scram256")))
    env = job.env(input_keyed="true", partitions="2", store="memory://")
    assert "topics ready" in job.cli("topics", "create", *scram256, env=env)
    out = job.cli("produce", str(sample), *scram, env=env)
    assert f"{len(records)} records" in out, out
    events = job.reader(job.input_topic)
    events.poll_until(lambda got: len(got) >= len(records), 30, what="produced events")
    assert sorted(r.value or b"" for r in events.records) == sorted(orjson.dumps(r) for r in records)

    alerts = job.reader(job.alert_topic)
    args = ("--store", "memory://", "--idle-timeout", "3s", "--data-dir", str(tmp_path / "data"))
    with job.worker(*args, env=env) as worker:  # plaintext
        alerts.poll_until(
            lambda got: view(latest(values_of(got)).values()) == expected,
            STARTUP_AND_WORK_S,
            worker.check_alive,
            "alerts == replay",
        )
    job.check_clean_stop(worker)
    alerts.poll(3.0)  # whatever the worker sent after the condition held, up to its stop
    n = len(alerts.records)
    out = job.cli("alerts", *scram, "--max", str(n), "--idle-exit", "20", env=env)
    printed = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(printed) == n
    assert view(latest(printed).values()) == expected
    check_no_secret(job.log.read_text(errors="replace"), secure.secrets(), "the commands' output")


# ------------------------------------------------------------------------------------------- errors

# case -> (listener, client file it starts from ("": none), the words the one error line must hold)
ERROR_CASES = {
    "wrong-scram-password": ("sasl_ssl", "scram", "authentication failed"),
    "unknown-ca": ("sasl_ssl", "scram", "certificate verify failed"),
    "rejected-client-certificate": ("mtls", "mtls", "rejected our client certificate"),
    "tls-port-in-plaintext": ("sasl_ssl", "", "TLS port spoken in plaintext"),
    "plaintext-port-with-tls": ("plaintext", "scram", "TLS spoken to a plaintext port"),
}
# the other command tried with each case (besides the worker), and the listener it uses if not the worker's
OTHER_COMMAND = {
    "wrong-scram-password": ("produce", None),
    "unknown-ca": ("alerts", None),
    "rejected-client-certificate": ("topics", None),
    "tls-port-in-plaintext": ("alerts", "mtls"),  # the mTLS port spoken in plaintext
    "plaintext-port-with-tls": ("produce", None),
}


@pytest.mark.parametrize("command", ["worker", "other"])
@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_security_mismatch_ends_with_one_clear_line(
    case: str, command: str, secure: SecureServices, rogue: OtherCa, job: Job, tmp_path: Path
) -> None:
    """Each misconfiguration ends the command within 60 s (--connect-timeout 10s): non-zero exit, exactly
    one stderr line naming the cause and the address, no traceback, no password in the output."""
    listener, base, words = ERROR_CASES[case]
    if command == "other" and OTHER_COMMAND[case][1]:
        listener = str(OTHER_COMMAND[case][1])
    address = {"sasl_ssl": secure.sasl_ssl, "mtls": secure.mtls, "plaintext": secure.plaintext}[listener]
    props = secure.client_properties(base) if base else {}
    wrong = f"wrong-{uuid.uuid4().hex}"
    changes = {
        "wrong-scram-password": {"sasl_password": wrong},
        "unknown-ca": {"ssl_ca_location": str(rogue.ca)},
        "rejected-client-certificate": {
            "ssl_certificate_location": str(rogue.client_cert),
            "ssl_key_location": str(rogue.client_key),
        },
    }.get(case, {})
    config: tuple[str, ...] = ()
    if props:
        config = (
            "--kafka-config-file",
            str(properties_file(tmp_path / "client.properties", props, **changes)),
        )
    common = ("--brokers", address, *config, "--connect-timeout", CONNECT_TIMEOUT)
    if command == "worker":
        args: tuple[str, ...] = ("worker", *common, "--data-dir", str(tmp_path / "data"))
    else:
        name = OTHER_COMMAND[case][0]
        if name == "produce":
            sample = tmp_path / "one.jsonl"
            sample.write_bytes(jsonl(recent_workload(1, seed=33)))
            args = ("produce", str(sample), *common)
        elif name == "topics":
            args = ("topics", "create", *common)
        else:
            args = ("alerts", *common, "--idle-exit", "5")
    out = run_to_exit(args, job.env(), job.workdir, job.log, FAIL_WITHIN_S)
    shown = f"`iis-portscan {args[0]}` exit {out.code} after {out.seconds:.1f}s:\n{out.output[-3000:]}"
    assert out.code != 0, shown
    assert out.seconds < FAIL_WITHIN_S, shown
    assert "Traceback" not in out.output, shown
    lines = [line for line in out.stderr.splitlines() if words.lower() in line.lower()]
    assert len(lines) == 1, f"expected one line saying {words!r}; {shown}"
    assert address in lines[0], f"the error line does not name {address}: {lines[0]}"
    if case == "unknown-ca":
        assert "unknown CA" in lines[0], lines[0]
    check_no_secret(out.output, [*secure.secrets(), wrong], f"`iis-portscan {args[0]}`'s output")


# -------------------------------------------------------------------------------------- Redis TLS/ACL


def test_worker_with_redis_over_tls_and_acl_user_equals_replay(
    secure: SecureServices, job: Job, tmp_path: Path
) -> None:
    """`--store rediss://` on the TLS port with `--redis-ca`, `--redis-username` and the password in
    PORTSCAN_REDIS_PASSWORD: the latest revisions equal replay, the windows are in Redis under the job's
    prefix (which the ACL user may touch, and nothing else), and the password is in no process's argv."""
    records = recent_workload(6_000, seed=34, scan_share=0.2, benign_clients=1_000)
    expected = expected_view(records)
    assert len(expected) >= 3
    store = ("--store", secure.redis_tls_url)
    env = job.env(input_keyed="true", partitions="2", redis_password=secure.redis_password)
    job.cli("topics", "create", *store, env=env)
    produce(job.brokers, job.input_topic, keyed(records))
    alerts = job.reader(job.alert_topic)
    args = (
        *store,
        "--redis-ca", secure.redis_ca,
        "--redis-username", secure.redis_username,
        "--idle-timeout", "3s",
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    client = redis.Redis.from_url(
        secure.redis_tls_url,
        username=secure.redis_username,
        password=secure.redis_password,
        ssl_ca_certs=secure.redis_ca,
        socket_timeout=10,
    )
    prefix = f"iis-portscan:{job.name}:"
    try:
        with job.worker(*args, env=env) as worker:
            alerts.poll_until(
                lambda got: view(latest(values_of(got)).values()) == expected,
                STARTUP_AND_WORK_S,
                worker.check_alive,
                "alerts == replay (Redis over TLS)",
            )
            argv = cmdline(worker.proc.pid)
            assert "--redis-username" in argv, f"not the worker's argv: {argv}"
            check_no_secret(argv, [secure.redis_password], f"the worker's /proc/{worker.proc.pid}/cmdline")
            check_no_secret(ps_listing(), [secure.redis_password], "`ps -eo args` output")
        job.check_clean_stop(worker)
        check_no_secret(job.log.read_text(errors="replace"), secure.secrets(), "the worker's output")
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        assert any(k.endswith(b":meta") for k in keys), f"no window state under {prefix}: {keys[:5]}"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set(f"not-{job.name}", b"1")  # the ACL user's keys are iis-portscan:* only
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    assert re.fullmatch(r"rediss://[^@]*", secure.redis_tls_url), "the TLS URL carries no credentials"


# ------------------------------------------------------------------------------------------ OAUTHBEARER

ISSUER, AUDIENCE = "https://issuer.iis-portscan.test", "iis-portscan-kafka"


@pytest.mark.slow
def test_worker_over_oauthbearer_equals_replay(
    secure: SecureServices, unique_name: str, tmp_path: Path
) -> None:
    """A private broker whose OAUTHBEARER listener (SASL_SSL) validates tokens against a JWKS endpoint the
    test serves on loopback, with a client-credentials token endpoint: the worker with
    sasl.oauthbearer.method=oidc (the client secret from the environment) equals replay and prints no
    secret; with a wrong client secret it ends within 60 s with one line naming the cause."""
    issuer = JwtIssuer(tmp_path / "jwt", ISSUER, AUDIENCE)
    secret = f"oidc-{uuid.uuid4().hex}"
    records = recent_workload(4_000, seed=35, scan_share=0.25, benign_clients=800)
    expected = expected_view(records)
    assert len(expected) >= 3
    with (
        OidcServer(issuer, "portscan-worker", secret) as oidc,
        oauth_kafka(tmp_path / "broker", secure.tls, f"{oidc.url}/jwks", ISSUER, AUDIENCE) as broker,
    ):
        (tmp_path / "job").mkdir()
        job = Job(unique_name, broker.address, tmp_path / "job")
        try:
            config = properties_file(
                tmp_path / "client-oauth.properties",
                {
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "OAUTHBEARER",
                    "sasl.oauthbearer.method": "oidc",
                    "sasl.oauthbearer.token.endpoint.url": f"{oidc.url}/token",
                    "sasl.oauthbearer.client.id": "portscan-worker",
                    "sasl.oauthbearer.client.secret": "${env:TEST_OIDC_SECRET}",
                    "sasl.oauthbearer.scope": "kafka",
                    "ssl.ca.location": str(secure.ca),
                },
            )
            env = {**job.env(input_keyed="true", partitions="2"), "TEST_OIDC_SECRET": secret}
            job.cli("topics", "create", env=env)  # plaintext
            produce(job.brokers, job.input_topic, keyed(records))
            alerts = job.reader(job.alert_topic)
            args = (
                "--brokers", broker.oauth_address,
                "--kafka-config-file", str(config),
                "--connect-timeout", "30s",
                "--store", "memory://",
                "--idle-timeout", "3s",
                "--data-dir", str(tmp_path / "data"),
            )  # fmt: skip
            with job.worker(*args, env=env) as worker:
                await_answer(
                    alerts,
                    expected,
                    worker.check_alive,
                    "alerts over OAUTHBEARER == replay",
                    closed=False,
                    timeout=STARTUP_AND_WORK_S,
                    context=lambda: f"\n{broker.log_tail()}",
                )
            job.check_clean_stop(worker)
            assert oidc.tokens_issued >= 2, "the worker's clients did not fetch tokens from the endpoint"
            check_no_secret(job.log.read_text(errors="replace"), [secret], "the worker's output")

            wrong = f"wrong-{uuid.uuid4().hex}"
            failing = ("worker", *args, "--connect-timeout", CONNECT_TIMEOUT)  # the last one wins
            out = run_to_exit(
                failing, {**env, "TEST_OIDC_SECRET": wrong}, job.workdir, job.log, FAIL_WITHIN_S
            )
            shown = f"exit {out.code} after {out.seconds:.1f}s:\n{out.output[-3000:]}"
            assert out.code != 0 and "Traceback" not in out.output, shown
            lines = [line for line in out.stderr.splitlines() if "authentication failed" in line]
            assert len(lines) == 1 and "token endpoint" in lines[0] and broker.oauth_address in lines[0], (
                shown
            )
            assert oidc.refused >= 1, "the wrong secret never reached the token endpoint"
            check_no_secret(out.output, [secret, wrong], "the worker's output")
        finally:
            job.close()
