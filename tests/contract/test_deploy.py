"""Deployment files: Kubernetes manifests, Grafana dashboard, Prometheus alert rules and the systemd unit.

No cluster, no network, no kustomize binary: the kustomize bases are rendered here (their kustomization.yaml
lists `resources` only) and every object is validated against the Kubernetes JSON schemas that the
`kubernetes-validate` package ships. The dashboard and the alert rules may use only the metric names in
deploy/observability/METRICS.txt, the names the worker exports.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml

from streams.settings import Settings, parse_duration_ms

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OBSERVABILITY = DEPLOY / "observability"
SYSTEMD = DEPLOY / "systemd"

K8S_VERSION = "1.30"
BASES = {"rocksdb": K8S, "redis": K8S / "redis"}
WORKLOAD_KINDS = ("StatefulSet", "Deployment")
IMAGE = "iis-portscan:0.1.0"
WEB_PORT = 6066
DATA_DIR = "/var/lib/iis-portscan"
DEFAULT_DRAIN_S = 30.0
# Settings the worker gains with issue 16 (bind address, static membership, drain, JSON logs). Until they
# are in streams/settings.py, their variables are accepted from this list; after that it is redundant.
ISSUE_16_SETTINGS = ("web_host", "group_instance_id", "drain_timeout", "log_format")


# --------------------------------------------------------------------------------------------- rendering


def render(base: Path) -> list[dict[str, Any]]:
    """The objects of a kustomize base whose kustomization.yaml holds only `resources` (files or bases)."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    extra = set(kustomization) - {"apiVersion", "kind", "resources"}
    assert not extra, f"{base}: this test renders `resources` only, not {sorted(extra)}"
    objects: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        path = (base / entry).resolve()
        if path.is_dir():
            objects += render(path)
            continue
        # kustomize's default load restrictor: a file must be inside the base's folder.
        assert path.is_relative_to(base.resolve()), f"{base}: {entry} is outside the base"
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def example_secrets(base: Path) -> list[dict[str, Any]]:
    """The Secrets a base's pods mount, as its secret.example.yaml shows them (not in the base itself)."""
    return [doc for doc in yaml.safe_load_all((base / "secret.example.yaml").read_text()) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    assert len(found) == 1, [o["kind"] for o in found]
    return found[0]


def worker_container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    return containers[0]


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def known_env_names() -> set[str]:
    return {Settings.env_name(n) for n in (*Settings.names(), *ISSUE_16_SETTINGS)}


def drain_seconds(env: dict[str, str]) -> float:
    return parse_duration_ms(env.get("PORTSCAN_DRAIN_TIMEOUT", f"{DEFAULT_DRAIN_S}s")) / 1000


@pytest.fixture(scope="module", params=sorted(BASES))
def base(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(BASES[request.param])


# ------------------------------------------------------------------------------------------- kubernetes


def test_bases_render_the_expected_objects() -> None:
    kinds = {name: sorted(o["kind"] for o in render(path)) for name, path in BASES.items()}
    assert kinds == {
        "rocksdb": ["NetworkPolicy", "PodDisruptionBudget", "Service", "StatefulSet"],
        "redis": ["Deployment", "NetworkPolicy", "PodDisruptionBudget"],
    }
    for name, path in BASES.items():
        keys = [(o["kind"], o["metadata"]["name"]) for o in render(path)]
        assert len(keys) == len(set(keys)), f"{name}: duplicate objects {keys}"


def test_every_object_validates_against_the_kubernetes_schemas(
    base: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = base
    for obj in objects + example_secrets(BASES[name]):
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")


def test_the_schema_validation_catches_mistakes() -> None:
    """The validator is not vacuous: a misspelt field and a wrong type are refused (strict schemas)."""
    sts = workload(render(K8S))
    misspelt = json.loads(json.dumps(sts))
    misspelt["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    wrong_type = json.loads(json.dumps(sts))
    wrong_type["spec"]["replicas"] = "two"
    for bad in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) not installed")
def test_rendering_matches_kubectl_kustomize() -> None:
    """Where kubectl is at hand, its kustomize builds the same objects as the renderer above."""
    for path in BASES.values():
        out = subprocess.run(
            ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        built = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out) if o}
        ours = {(o["kind"], o["metadata"]["name"]): o for o in render(path)}
        assert built == ours


def test_probes_use_the_health_endpoints_on_the_web_port(base: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = base
    container = worker_container(workload(objects))
    env = plain_env(container)
    assert env["PORTSCAN_WEB_PORT"] == str(WEB_PORT)
    assert env["PORTSCAN_WEB_HOST"] == "0.0.0.0"  # reachable by the kubelet and Prometheus
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        port = get["port"]
        assert ports.get(port, port) == WEB_PORT, f"{probe} port {port!r}"


def test_termination_grace_exceeds_the_drain(base: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = base
    obj = workload(objects)
    grace = obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = drain_seconds(plain_env(worker_container(obj)))
    assert grace > drain, f"terminationGracePeriodSeconds {grace} must exceed the drain timeout {drain}s"
    assert grace == 45 and drain == DEFAULT_DRAIN_S


def test_statefulset_has_a_volume_per_pod_at_the_data_dir() -> None:
    objects = render(K8S)
    sts = workload(objects)
    assert sts["kind"] == "StatefulSet"
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    container = worker_container(sts)
    env = plain_env(container)
    assert env["PORTSCAN_STORE"].startswith("rocksdb://")
    assert env["PORTSCAN_DATA_DIR"] == DATA_DIR
    claims = {t["metadata"]["name"]: t for t in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[DATA_DIR] in claims, "the data dir must be a volumeClaimTemplate"
    claim = claims[mounts[DATA_DIR]]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"]
    # A pod volume of the same name would shadow the claim.
    assert mounts[DATA_DIR] not in {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
    # Stable names: static membership from the pod name; the headless Service governs the set.
    instance_id = next(e for e in container["env"] if e["name"] == "PORTSCAN_GROUP_INSTANCE_ID")
    assert instance_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    service = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()


def test_redis_variant_is_a_deployment_without_persistent_volumes() -> None:
    deployment = workload(render(K8S / "redis"))
    assert deployment["kind"] == "Deployment"
    container = worker_container(deployment)
    env = plain_env(container)
    # TLS, the server checked against a CA from the Secret: never the password in clear
    assert env["PORTSCAN_STORE"].startswith("rediss://")
    ca = env["PORTSCAN_REDIS_CA"]
    mount = next(m for m in container["volumeMounts"] if ca.startswith(m["mountPath"].rstrip("/") + "/"))
    secret_name = next(
        v["secret"]["secretName"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    )
    secret = next(s for s in example_secrets(K8S / "redis") if s["metadata"]["name"] == secret_name)
    assert ca.rsplit("/", 1)[1] in secret["stringData"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert all(set(v) - {"name"} <= {"emptyDir", "secret"} for v in volumes), volumes


def test_no_base_carries_a_secret_that_apply_would_overwrite(base: tuple[str, list[dict[str, Any]]]) -> None:
    """`kubectl apply -k` of a base must not replace the operator's real Secrets with placeholders."""
    _, objects = base
    assert by_kind(objects, "Secret") == []


def test_secrets_are_example_placeholders_mounted_as_files(base: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = base
    secrets = {s["metadata"]["name"]: s for s in by_kind(example_secrets(BASES[name]), "Secret")}
    for secret in secrets.values():
        assert secret["type"] == "Opaque"
        assert "data" not in secret, "keep the example in stringData, readable"
        secret_text = "\n".join(secret["stringData"].values())
        assert "CHANGE-ME" in secret_text, "example Secrets hold placeholders only"
    obj = workload(objects)
    container = worker_container(obj)
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    file_settings = {k: v for k, v in plain_env(container).items() if k.endswith("_FILE")}
    expected = {"PORTSCAN_KAFKA_CONFIG_FILE"} | (
        {"PORTSCAN_REDIS_PASSWORD_FILE"} if name == "redis" else set()
    )
    assert set(file_settings) == expected
    for setting, path in file_settings.items():
        mount = next(
            m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
        )
        assert mount.get("readOnly") is True, setting
        source = volumes[mount["name"]]["secret"]
        key = path[len(mount["mountPath"].rstrip("/")) + 1 :]
        assert key in secrets[source["secretName"]]["stringData"], f"{setting}: no key {key!r}"
        assert source["defaultMode"] == 0o440
    assert plain_env(container)["PORTSCAN_KAFKA_CONFIG_FILE"] == "/etc/iis-portscan/kafka/client.properties"


def test_example_kafka_properties_are_ones_the_worker_accepts() -> None:
    from streams.kafka.client_config import ALIASES, SUPPORTED, parse_properties

    for path in BASES.values():
        secret = next(s for s in example_secrets(path) if s["metadata"]["name"] == "iis-portscan-kafka")
        pairs = parse_properties(secret["stringData"]["client.properties"], "client.properties")
        assert pairs and {k for k, _ in pairs} <= set(SUPPORTED) | set(ALIASES)


def test_pod_security_and_writable_paths(base: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = base
    pod = workload(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    container = worker_container(workload(objects))
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {DATA_DIR, "/tmp"}


def test_resources_scrape_annotations_image_and_command(base: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = base
    obj = workload(objects)
    container = worker_container(obj)
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    annotations = obj["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(WEB_PORT),
        "prometheus.io/path": "/metrics",
    }
    assert container["image"] == IMAGE
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and IMAGE.endswith(":" + version.group(1))
    assert 'ENTRYPOINT ["iis-portscan"]' in (DEPLOY / "Dockerfile").read_text()
    assert container["args"] == ["worker"]


def test_environment_holds_only_worker_settings_with_valid_values(
    base: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = base
    container = worker_container(workload(objects))
    names = {e["name"] for e in container["env"]}
    assert names <= known_env_names(), f"variables the worker does not read: {names - known_env_names()}"
    current = {Settings.env_name(n) for n in Settings.names()}
    env = {k: v for k, v in plain_env(container).items() if k in current}
    loaded = Settings.load(None, env)
    assert loaded.web_port == WEB_PORT and loaded.data_dir == DATA_DIR


def test_network_policy_admits_only_the_scraper_and_the_kubelet_to_the_web_port(
    base: tuple[str, list[dict[str, Any]]],
) -> None:
    """Ingress to the worker pods: the web port only, from Prometheus's pods and the nodes' CIDR only."""
    _, objects = base
    (policy,) = by_kind(objects, "NetworkPolicy")
    spec = policy["spec"]
    labels = workload(objects)["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(spec["podSelector"]) == {"matchLabels"}
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": WEB_PORT, "protocol": "TCP"}]
    scraper, kubelet = rule["from"]
    assert scraper == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    assert set(kubelet) == {"ipBlock"} and set(kubelet["ipBlock"]) == {"cidr"}
    ipaddress.ip_network(kubelet["ipBlock"]["cidr"])
    ports = {p["containerPort"] for p in worker_container(workload(objects))["ports"]}
    assert ports == {WEB_PORT}, "a port the policy does not cover"


def test_disruption_budget_covers_the_workload(base: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = base
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = workload(objects)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# ---------------------------------------------------------------------------------------- observability

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
     "bool", "inf", "nan"}
)  # fmt: skip
_HISTOGRAM_SUFFIX = re.compile(r"_(?:bucket|sum|count)$")
_GRAFANA_RANGE = re.compile(
    r"\$(?:__rate_interval|__interval|__range)\b|\$\{__(?:rate_interval|interval|range)\}"
)
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")


def metric_names_by_regex(expr: str) -> set[str]:
    """Metric names in a PromQL expression: every identifier that is not a function, keyword or label."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _LABEL_LIST.sub("", text)
    return {_HISTOGRAM_SUFFIX.sub("", m) for m in _IDENTIFIER.findall(text) if m not in _KEYWORDS}


def for_the_parser(expr: str) -> str:
    """Grafana's variables replaced by values PromQL accepts."""
    return _GRAFANA_VARIABLE.sub("x", _GRAFANA_RANGE.sub("5m", expr))


def selectors(expr: str) -> list[tuple[str | None, tuple[str, ...]]]:
    """(metric name, the functions it is nested in) of every selector, from the PromQL syntax tree."""
    found: list[tuple[str | None, tuple[str, ...]]] = []
    calls: list[str] = []

    def enter(node: Any) -> None:
        if isinstance(node, promql_parser.Call):
            calls.append(node.func.name)
        elif isinstance(node, promql_parser.VectorSelector):
            found.append((node.name, tuple(calls)))

    def leave(node: Any) -> None:
        if isinstance(node, promql_parser.Call):
            calls.pop()

    promql_parser.walk(promql_parser.parse(for_the_parser(expr)), enter, leave)
    return found


def exported_metrics() -> list[str]:
    return [line.strip() for line in (OBSERVABILITY / "METRICS.txt").read_text().splitlines() if line.strip()]


def check_expressions(exprs: dict[str, str]) -> set[str]:
    """Each expression parses and names only exported metrics; counters only under rate()/increase()."""
    exported = set(exported_metrics())
    used: set[str] = set()
    for where, expr in exprs.items():
        by_regex = metric_names_by_regex(expr)
        assert by_regex <= exported, f"{where}: not in METRICS.txt: {sorted(by_regex - exported)}"
        try:
            tree = selectors(expr)
        except ValueError as exc:
            pytest.fail(f"{where}: invalid PromQL: {exc}\n{expr}")
        by_tree = {_HISTOGRAM_SUFFIX.sub("", name or "") for name, _ in tree}
        assert by_tree == by_regex, f"{where}: regex {sorted(by_regex)} vs syntax tree {sorted(by_tree)}"
        for name, calls in tree:
            assert name, f"{where}: a selector without a metric name"
            if name.endswith(("_total", "_bucket", "_sum", "_count")):
                assert {"rate", "irate", "increase"} & set(calls), f"{where}: counter {name} outside rate()"
        used |= by_regex
    return used


def test_metrics_list_is_well_formed() -> None:
    names = exported_metrics()
    assert len(names) == len(set(names)) == 27
    for name in names:
        assert re.fullmatch(r"iis_portscan_[a-z_]+", name), name
        assert not _HISTOGRAM_SUFFIX.search(name), f"{name}: list the histogram's base name"


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, instance) "
        '(rate(a_seconds_bucket{x=~"$i", le!="b c"}[$__rate_interval])))'
        " / on (instance) group_left sum without (job) (increase(b_total[5m] offset 1h)) > 1e3"
        " unless absent(c) and time() - d > bool 5"
    )
    assert metric_names_by_regex(expr) == {"a_seconds", "b_total", "c", "d"}
    assert {name for name, _ in selectors(expr)} == {"a_seconds_bucket", "b_total", "c", "d"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OBSERVABILITY / "iis-portscan-dashboard.json").read_text())
    return loaded


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_uses_only_exported_metrics() -> None:
    exprs = {
        f"panel {p['title']!r} {t['refId']}": t["expr"]
        for p in dashboard_panels()
        for t in p.get("targets", [])
    }
    used = check_expressions(exprs)
    assert used >= {
        "iis_portscan_events_total",
        "iis_portscan_alerts_total",
        "iis_portscan_consumer_lag",
        "iis_portscan_event_time_lag_seconds",
        "iis_portscan_watermark_seconds",
        "iis_portscan_dead_letters_total",
        "iis_portscan_checkpoint_seconds",
        "iis_portscan_open_windows",
        "iis_portscan_rebalances_total",
        "iis_portscan_store_errors_total",
        "iis_portscan_store_retries_total",
    }
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.findall(r"label_values\((\w+)", variable["definition"])
            assert metric in exported_metrics()


def test_dashboard_is_importable() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    panels = list(dashboard_panels())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"} <= variables


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((OBSERVABILITY / "iis-portscan-alerts.yaml").read_text())["groups"]
    assert set(groups[0]) == {"name", "rules"}
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_use_only_exported_metrics() -> None:
    check_expressions({rule["alert"]: rule["expr"] for rule in alert_rules()})


def test_alert_rules_cover_the_on_call_questions() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert {
        "IisPortscanDown",
        "IisPortscanConsumerLagGrowing",
        "IisPortscanPartitionStalled",
        "IisPortscanDeadLetterRate",
        "IisPortscanNoCheckpoint",
    } <= set(names)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"IisPortscan[A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
    uses = {r["alert"]: metric_names_by_regex(r["expr"]) for r in rules}
    assert "iis_portscan_last_checkpoint_timestamp_seconds" in uses["IisPortscanNoCheckpoint"]
    assert "iis_portscan_dead_letters_total" in uses["IisPortscanDeadLetterRate"]
    assert "iis_portscan_consumer_lag" in uses["IisPortscanPartitionStalled"]


# ---------------------------------------------------------------------------------------------- systemd


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """[section] -> (key, value) in order; repeated keys kept, backslash continuations joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + " " + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def test_systemd_unit() -> None:
    unit = unit_entries(SYSTEMD / "iis-portscan.service")
    service = dict(unit["Service"])
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "iis-portscan"
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes"}.items():
        assert service[key] == value, key
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "", "root")
    assert unit["Install"] == [("WantedBy", "multi-user.target")]

    env = env_file(SYSTEMD / "iis-portscan.env")
    assert set(env) <= known_env_names(), (
        f"variables the worker does not read: {set(env) - known_env_names()}"
    )
    current = {Settings.env_name(n) for n in Settings.names()}
    Settings.load(None, {k: v for k, v in env.items() if k in current})
    assert not {"PORTSCAN_DATA_DIR", "PORTSCAN_KAFKA_CONFIG_FILE", "PORTSCAN_REDIS_PASSWORD_FILE"} & set(env)
    assert env["PORTSCAN_WEB_PORT"] == str(WEB_PORT)
    assert parse_duration_ms(service["TimeoutStopSec"]) / 1000 > drain_seconds(env)

    assert service["EnvironmentFile"] == "/etc/iis-portscan/iis-portscan.env"
    argv = service["ExecStart"].split()
    assert argv[0].startswith("/") and argv[1] == "worker"
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert len(argv) % 2 == 0
    assert flags["--data-dir"] == "${STATE_DIRECTORY}"
    credentials = dict(v.split(":", 1) for k, v in unit["Service"] if k == "LoadCredential")
    for flag in ("--kafka-config-file", "--redis-password-file"):
        directory, _, name = flags[flag].partition("/")
        assert directory == "${CREDENTIALS_DIRECTORY}" and name in credentials, flag
        assert credentials[name].startswith("/etc/iis-portscan/")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own check; the ExecStart binary is pointed at one that exists here (verify requires it)."""
    text = (SYSTEMD / "iis-portscan.service").read_text()
    installed = Path(sys.executable).with_name("iis-portscan")
    binary = installed if installed.exists() else Path(sys.executable)
    text, count = re.subn(r"^ExecStart=\S+", f"ExecStart={binary}", text, flags=re.M)
    assert count == 1
    unit = tmp_path / "iis-portscan.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "iis-portscan" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr
