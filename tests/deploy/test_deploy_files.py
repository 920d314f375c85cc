"""The deployment files, validated statically: Dockerfile (hadolint), compose file (Compose
specification schema), Kubernetes manifests (Kubernetes schemas), Prometheus config (promtool),
Grafana dashboard (its queries against the metric names the service really exports)."""

from __future__ import annotations

import copy
import json
import re
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
@pytest.mark.parametrize("name,doc", _k8s_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifest_is_valid(name, doc):
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_validation_can_fail():
    deployment = next(d for n, d in _k8s_docs() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecondz"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_topology():
    docs = {d["kind"]: d for _, d in _k8s_docs()}
    assert set(docs) >= {"Deployment", "Service", "ConfigMap", "Secret", "Job",
                         "HorizontalPodAutoscaler"}
    deployment = docs["Deployment"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container, probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + DRAIN_S
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert docs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert docs["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    names = {ref[k]["name"] for ref in container["envFrom"] for k in ref}
    assert names == {docs["ConfigMap"]["metadata"]["name"], docs["Secret"]["metadata"]["name"]}
