"""The deployment files are checked by the tools that consume them: promtool (config, rules and
rule unit tests), docker-compose (the compose file), kubernetes-validate (the k8s manifests, against
the Kubernetes 1.30 schemas), plus static checks of the Dockerfile and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    # Python tools (kubernetes-validate) live beside this interpreter, which need not be on PATH
    beside = Path(sys.executable).parent / args[0]
    tool = str(beside) if beside.is_file() else shutil.which(args[0])
    assert tool is not None, f"{args[0]} is not installed; `make deploy-tools` installs it"
    return subprocess.run([tool, *args[1:]], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_prometheus_config_and_rules_pass_promtool() -> None:
    config = run_tool("promtool", "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run_tool("promtool", "check", "rules", str(DEPLOY / "prometheus" / "rules.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_alert_rules_fire_on_their_unit_test_series() -> None:
    result = run_tool("promtool", "test", "rules", str(DEPLOY / "prometheus" / "rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_documented_in_operations() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert len(alerts) >= 4
    for alert in alerts:
        assert alert in operations, f"docs/operations.md does not explain {alert}"


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_compose_file_validates(profile: str | None) -> None:
    args = ["docker-compose", "--project-directory", str(ROOT)]
    if profile:
        args += ["--profile", profile]
    result = run_tool(*args, "config", "-q")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_wires_redis_replicas_balancer_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "api", "nginx", "prometheus", "grafana"} <= set(services)
    assert services["api"]["deploy"]["replicas"] >= 2
    assert "--appendonly" in services["redis"]["command"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"compose mounts {source}, which does not exist"


def test_a_broken_compose_file_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("replicas: 2", "replicas: two"))
    result = run_tool("docker-compose", "-f", str(broken), "--project-directory", str(ROOT), "config", "-q")
    assert result.returncode != 0 and "replicas" in result.stderr


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    files = [str(p) for p in sorted((DEPLOY / "k8s").glob("*.yaml")) if p.name != "kustomization.yaml"]
    result = run_tool("kubernetes-validate", "-k", "1.30.0", "--strict", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr


def test_kubernetes_validation_catches_a_wrong_type(tmp_path: Path) -> None:
    bad = tmp_path / "deployment.yaml"
    bad.write_text((DEPLOY / "k8s" / "deployment.yaml").read_text().replace("replicas: 2", "replicas: two"))
    result = run_tool("kubernetes-validate", "-k", "1.30.0", "--strict", str(bad))
    assert "spec.replicas" in result.stdout + result.stderr


def test_kustomization_lists_every_manifest_and_the_deployment_has_probes() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    manifests = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    kinds = {d["kind"] for d in k8s_documents()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret", "StatefulSet"} <= kinds
    deployment = next(d for d in k8s_documents() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])


def test_dockerfile_has_cpu_and_gpu_images_run_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    assert {"cpu", "gpu", "cpu-build", "gpu-build"} <= set(stages)
    for stage in ("cpu", "gpu"):
        body = text.split(f"AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.search(r"^USER\s+(?!root)\w+", body, flags=re.MULTILINE), f"{stage} image runs as root"
        assert "HEALTHCHECK" in body and "/healthz" in body
        assert '"ldensf", "serve"' in body
    assert "onnxruntime-gpu" in text
    copied = 0
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.MULTILINE):
        words = line.split()
        if any(w.startswith("--from=") for w in words):
            continue
        for source in [w for w in words[:-1] if not w.startswith("--")]:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
            copied += 1
    assert copied >= 8
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_dashboard_is_valid_and_covers_the_operational_questions() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "ldensf.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for needed in (
        "ldensf_update_duration_seconds_bucket",
        "ldensf_observations_total",
        "ldensf_sessions_active",
        "ldensf_batch_size",
        "ldensf_ensemble_spread",
    ):
        assert needed in exprs
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}" in exprs
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "ldensf.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_rules_and_dashboard_only_use_metrics_the_service_exports() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    import service.metrics

    exported = {m._name for m in vars(service.metrics).values() if isinstance(m, MetricWrapperBase)}
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "ldensf.json").read_text())
    texts = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    texts.append((DEPLOY / "prometheus" / "rules.yml").read_text())
    used = set()
    for text in texts:
        for name in re.findall(r"\bldensf_[a-z_]+", text):
            used.add(re.sub(r"_(bucket|sum|count|total)$", "", name))
    assert used, "no ldensf metric found in the rules and dashboard"
    assert used <= exported, f"not exported by the service: {sorted(used - exported)}"
