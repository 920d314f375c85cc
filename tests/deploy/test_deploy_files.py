"""The deployment files, validated statically: Dockerfile (hadolint), compose file (Compose
specification schema), Kubernetes manifests (Kubernetes schemas, and the StatefulSet's shutdown
timing, volumes and companions), Prometheus config (promtool), Grafana dashboard (its queries
against the metric names the service really exports), HAProxy config (haproxy -c)."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import tomllib

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.deploy_checks import (
    DASHBOARD,
    ROOT,
    compose_schema,
    dashboard_queries,
    metric_names,
    tool,
)
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp

DRAIN_S = 30  # PredictionLog.stop's default timeout: the longest a clean shutdown drains


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _k8s_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((ROOT / "deploy/k8s").glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


# -- Dockerfile -------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert bases and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", bases[0]), "base image not pinned"
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "not multi-stage"
    assert re.search(r"^USER 10001:10001$", text, re.M), "must run as a numeric non-root user"
    assert re.search(r"^HEALTHCHECK .*\n.*/health/live", text, re.M)
    assert 'ENTRYPOINT ["future-skills"]' in text and 'CMD ["serve"]' in text
    assert "PROMETHEUS_MULTIPROC_DIR=" in text
    # Dependencies come from the lock, in a layer before the code is copied.
    assert text.index("pip install --requirement requirements.lock") < text.index("COPY app ./app")


def test_requirements_lock_covers_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["server"]
    pinned = {
        line.split("==")[0].replace("_", "-").lower()
        for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line
    }
    names = {re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0].replace("_", "-").lower() for dep in wanted}
    missing = names - pinned
    assert not missing, f"run scripts/lock_image_requirements.sh; not pinned: {sorted(missing)}"


# -- docker compose ----------------------------------------------------------------------------
def test_compose_file_matches_the_compose_specification():
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, errors
    broken = copy.deepcopy(_compose())
    broken["services"]["service"]["healthcheck"]["intervall"] = "5s"
    assert list(validator.iter_errors(broken)), "the schema check cannot fail"


def test_compose_topology():
    services = _compose()["services"]
    assert set(services) >= {"postgres", "minio", "minio-init", "mlflow", "bootstrap", "service",
                             "prometheus", "grafana"}
    for name in ("postgres", "minio", "mlflow", "service"):
        assert "healthcheck" in services[name], name
    mlflow = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow and "--serve-artifacts" in mlflow
    assert "--artifacts-destination=s3://" in mlflow and "--allowed-hosts=" in mlflow
    assert services["mlflow"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    depends = services["service"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["mlflow"]["condition"] == "service_healthy"
    assert depends["bootstrap"]["condition"] == "service_completed_successfully"
    grace = int(services["service"]["stop_grace_period"].rstrip("s"))
    assert grace > DRAIN_S
    assert services["bootstrap"]["command"] == ["bootstrap"]
    assert "/health/" in json.dumps(services["service"]["healthcheck"])


def test_env_example_documents_every_compose_variable():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z0-9_]+=", line)}
    assert used - documented == set(), f"undocumented: {sorted(used - documented)}"
    # each variable has a comment line right above it
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z0-9_]+=", line):
            assert lines[i - 1].startswith("#"), f"{line.split('=')[0]} has no comment"


# -- Prometheus and Grafana ---------------------------------------------------------------------
def test_prometheus_config_passes_promtool():
    result = subprocess.run([tool("promtool"), "check", "config",
                             str(ROOT / "deploy/prometheus/prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboard_and_datasource():
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    uid = datasources[0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 15
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("version and level", "latency", "errors", "drift score", "spool", "serving version",
                  "reloads"):
        assert topic in titles, topic


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket'
            '{status=~"4xx|5xx"}[5m]))) / clamp_min(sum(rate(http_requests_total[5m])), 1e-9)')
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "http_requests_total"}
    assert metric_names("max by (feature) (fs_drift_score)") == {"fs_drift_score"}


async def test_dashboard_queries_use_metrics_the_service_exports(settings):
    async with RunningApp(settings) as client:
        item = valid_items(1)[0] | {"skill": "Underwater Basket Weaving"}  # an unknown category
        assert (await client.post("/v1/predictions", json={"items": [item]})).status_code == 200
        assert (await client.post("/v1/predictions", json={"items": []})).status_code == 422
        await client.get("/health/ready")
        scrape = (await client.get("/metrics")).text
    families = list(text_string_to_metric_families(scrape))
    # A labelled family with no child yet (no drift check, no promotion so far) has no samples but
    # is declared; counters are queried by their _total name.
    exported = {s.name for f in families for s in f.samples} | {f.name for f in families}
    exported |= {f"{f.name}_total" for f in families if f.type == "counter"}
    used = set().union(*(metric_names(e) for _, e in dashboard_queries(json.loads(DASHBOARD.read_text()))))
    unknown = used - exported
    assert not unknown, f"the dashboard queries metrics the service does not export: {sorted(unknown)}"


# -- Kubernetes ----------------------------------------------------------------------------------
DATA_DIR = "/var/lib/future-skills"  # FS_DATA_DIR in the image: <data dir>/spool, the model cache


def _one(kind: str, component: str | None = None) -> dict:
    """The single manifest of this kind (and app.kubernetes.io/component label, if given)."""
    found = [d for _, d in _k8s_docs() if d["kind"] == kind and (
        component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"{len(found)} {kind} manifests (component {component})"
    return found[0]


def _volume_at(container: dict, mount_path: str) -> str:
    """The name of the volume the container mounts at mount_path."""
    names = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    assert names, f"nothing mounted at {mount_path}"
    return names[0]


@pytest.mark.parametrize("name,doc", _k8s_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifest_is_valid(name, doc):
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_validation_can_fail():
    statefulset = _one("StatefulSet")
    broken = copy.deepcopy(statefulset)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecondz"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
    broken = copy.deepcopy(statefulset)
    broken["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaledDown"] = "Retain"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_topology():
    kinds = {d["kind"] for _, d in _k8s_docs()}
    assert kinds >= {"StatefulSet", "Service", "ConfigMap", "Secret", "Job", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget"}
    assert "Deployment" not in kinds, "replicas need their own volumes: a StatefulSet"
    statefulset = _one("StatefulSet")
    spec = statefulset["spec"]
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["serve"]

    # Probes: readiness (and start-up) on /health/ready, which turns 503 on SIGTERM; liveness apart.
    for probe, path in (("startupProbe", "/health/ready"), ("readinessProbe", "/health/ready"),
                        ("livenessProbe", "/health/live")):
        assert container[probe]["httpGet"]["path"] == path, probe
        assert container[probe]["httpGet"]["port"] in ("http", 8000), probe

    # Shutdown: preStop, then the listener's delay, the in-flight grace and the drain, all before
    # the kubelet's SIGKILL. The three come from the ConfigMap, set explicitly.
    config = _one("ConfigMap")["data"]
    steps = ("FS_LIMIT_SHUTDOWN_DELAY_S", "FS_LIMIT_SHUTDOWN_GRACE_S", "FS_SPOOL_DRAIN_TIMEOUT_S")
    delay, grace, drain = (float(config[k]) for k in steps)
    assert delay > 0, "with no delay the listener closes before load balancers see the 503"
    assert drain > 0
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pre_stop_s = float(pre_stop[-1])
    assert 0 < pre_stop_s <= 15, "a short sleep: only the endpoint removal's propagation"
    assert pre_stop_s + delay + grace + drain < pod["spec"]["terminationGracePeriodSeconds"]

    # Each replica's own volume at the data dir, kept when scaled down or deleted.
    templates = {t["metadata"]["name"]: t for t in spec["volumeClaimTemplates"]}
    data = _volume_at(container, DATA_DIR)
    assert data in templates, "the data dir is not on the replica's claim"
    assert data not in {v["name"] for v in pod["spec"].get("volumes", [])}, "shadowed by a pod volume"
    assert templates[data]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert templates[data]["spec"]["resources"]["requests"]["storage"]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain", "whenDeleted": "Retain"}
    assert _volume_at(container, "/tmp") in {
        v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}

    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    names = {ref[k]["name"] for ref in container["envFrom"] for k in ref}
    assert names == {_one("ConfigMap")["metadata"]["name"], _one("Secret")["metadata"]["name"]}

    # Services: the clients' ClusterIP one, and the headless one the StatefulSet is governed by.
    services = {d["metadata"]["name"]: d for _, d in _k8s_docs() if d["kind"] == "Service"}
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    clients = [s for s in services.values() if s["spec"].get("clusterIP") != "None"]
    assert len(clients) == 1 and clients[0]["spec"].get("type", "ClusterIP") == "ClusterIP"
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]

    pdb = _one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    hpa = _one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": statefulset["metadata"]["name"]}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    policies = hpa["behavior"]["scaleDown"]["policies"]
    assert policies and all(p["type"] == "Pods" and p["value"] == 1 for p in policies)
    # ...and one period is longer than a pod's shutdown: replicas drain one after the other.
    assert all(p["periodSeconds"] >= pod["spec"]["terminationGracePeriodSeconds"] for p in policies)

    migrate = _one("Job", "migration")["spec"]["template"]["spec"]
    assert migrate["containers"][0]["args"] == ["db", "upgrade"]

    # The drain Job: a removed replica's claim at the data dir, and `future-skills spool drain`.
    drain_pod = _one("Job", "spool-drain")["spec"]["template"]["spec"]
    drainer = drain_pod["containers"][0]
    assert drainer["args"] == ["spool", "drain"]
    assert drainer["image"] == container["image"]
    assert {ref[k]["name"] for ref in drainer["envFrom"] for k in ref} == names
    volumes = {v["name"]: v for v in drain_pod["volumes"]}
    claim = volumes[_volume_at(drainer, DATA_DIR)]["persistentVolumeClaim"]["claimName"]
    # a StatefulSet's claims are named <template>-<StatefulSet>-<ordinal>
    assert re.fullmatch(rf"{data}-{statefulset['metadata']['name']}-\d+", claim), claim
    assert drain_pod["restartPolicy"] == "Never"
    assert drain_pod["securityContext"]["runAsUser"] == pod["spec"]["securityContext"]["runAsUser"]


# -- HAProxy ---------------------------------------------------------------------------------------
HAPROXY_CFG = ROOT / "deploy/haproxy/haproxy.cfg"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _haproxy_check(config) -> subprocess.CompletedProcess:
    env = os.environ | {
        "FS_LB_BIND": f"127.0.0.1:{_free_port()}", "FS_LB_STATS_BIND": f"127.0.0.1:{_free_port()}",
        "FS_REPLICA_0": "127.0.0.1:1", "FS_REPLICA_1": "127.0.0.1:2",
    }
    return subprocess.run([tool("haproxy"), "-c", "-f", str(config)], env=env,
                          capture_output=True, text=True, timeout=60)


def _haproxy_directives() -> list[str]:
    """The config's lines, comments and blank lines removed, whitespace collapsed."""
    lines = (re.sub(r"(^|\s)#.*", "", line).split() for line in HAPROXY_CFG.read_text().splitlines())
    return [" ".join(words) for words in lines if words]


def test_haproxy_config_passes_haproxy_check():
    result = _haproxy_check(HAPROXY_CFG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_haproxy_check_does_fail_on_a_bad_config(tmp_path):
    text = HAPROXY_CFG.read_text()
    assert "balance roundrobin" in text
    bad = tmp_path / "haproxy.cfg"
    bad.write_text(text.replace("balance roundrobin", "balance roundrobinn"))
    result = _haproxy_check(bad)
    assert result.returncode != 0
    assert "Configuration file is valid" not in result.stdout + result.stderr


def test_haproxy_config_routes_by_readiness_and_never_resends_a_post():
    directives = _haproxy_directives()
    # the health check asks /health/ready (503 from SIGTERM on), not /health/live, on every server
    assert "option httpchk" in directives or any(d.startswith("option httpchk ") for d in directives)
    assert any(re.fullmatch(r"(option httpchk( GET)?|http-check send meth GET uri) /health/ready", d)
               for d in directives), "no health check on /health/ready"
    assert not any("/health/live" in d for d in directives)
    servers = [d for d in directives if d.startswith("server ")]
    assert servers and (any(d.startswith("default-server ") and "check" in d.split() for d in directives)
                        or all("check" in d.split() for d in servers)), "servers not health-checked"
    # connection failures are retried; a request that reached a replica is retried only if safe
    assert any(d.startswith("retry-on ") for d in directives)
    assert any(d.startswith("http-request disable-l7-retry ") and "METH_GET" in d and "METH_HEAD" in d
               for d in directives), "POSTs must never be re-sent"
