"""The Helm chart lints, renders and validates against the Kubernetes schemas, offline.

``helm`` comes from scripts/get-helm.sh (run by scripts/setup.sh); the
rendered manifests are checked with kubernetes-validate (bundled schemas), and
the properties that make the deployment horizontally scalable are asserted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "fathom"
HELM = REPO / ".fathom" / "tools" / "helm"


@pytest.fixture(scope="module")
def helm() -> str:
    path = str(HELM) if HELM.exists() else shutil.which("helm")
    if not path:
        pytest.fail("helm not found: run ./scripts/get-helm.sh (scripts/setup.sh does)")
    return path


def render(helm: str, *values: str, **sets: str) -> list[dict]:
    args = [helm, "template", "rel", str(CHART), "--namespace", "rag"]
    for v in values:
        args += ["-f", str(CHART / v)]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def test_lint_strict(helm):
    proc = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(CHART / "ci/production-values.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", [(), ("ci/production-values.yaml",)])
def test_manifests_validate_against_kubernetes_schemas(helm, values):
    args = [helm, "template", "rel", str(CHART)] + [x for v in values for x in ("-f", str(CHART / v))]
    manifests = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    proc = subprocess.run([str(REPO / ".venv/bin/kubernetes-validate"), "--strict", "--quiet", "-"],
                          input=manifests, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_api_is_stateless_and_scales_horizontally(helm):
    docs = render(helm, "ci/production-values.yaml")
    api = by_kind(docs, "Deployment", "rel-fathom-api")
    container = api["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["FATHOM_STORE__BACKEND"]["value"] == "server"      # never the single-process embedded engine
    assert env["FATHOM_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    assert env["FATHOM_REGISTRY_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    assert env["FATHOM_JOBS__CONSUMER_IN_API"]["value"] == "false"  # jobs run in the worker deployment
    assert "replicas" not in api["spec"]                            # the HPA owns the replica count
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["scaleTargetRef"]["name"] == "rel-fathom-api"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert by_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    worker = by_kind(docs, "Deployment", "rel-fathom-worker")
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]


def test_api_keys_are_hashes_only(helm):
    docs = render(helm, "ci/production-values.yaml")
    secret = by_kind(docs, "Secret")
    assert '"sha256"' in secret["stringData"]["api_keys.json"]
    bad = subprocess.run([helm, "template", "rel", str(CHART), "--set", "apiKeys.entries[0].id=x",
                          "--set", "apiKeys.entries[0].sha256=fth_plaintext_key"], capture_output=True, text=True)
    assert bad.returncode != 0 and "sha256" in bad.stderr


def test_tenant_config_and_rerank_settings_reach_the_pods(helm):
    docs = render(helm, "ci/production-values.yaml")
    config = by_kind(docs, "ConfigMap")
    assert '"min_confidence":0.6' in config["data"]["tenants.json"]
    env = {e["name"]: e.get("value") for e in
           by_kind(docs, "Deployment", "rel-fathom-api")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FATHOM_RERANK__KIND"] == "cross-encoder" and env["FATHOM_RERANK__DEPTH"] == "20"
