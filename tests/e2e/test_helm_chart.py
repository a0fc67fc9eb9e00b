"""The Helm chart lints, renders and validates against the Kubernetes schemas, offline, and is wired right.

``helm`` comes from scripts/get-helm.sh (run by scripts/setup.sh); the
rendered manifests are checked with kubernetes-validate (bundled schemas,
strict). Three values files: the defaults (bundled 3-node Qdrant cluster and
Redis), a production example, and external services (nothing stateful
deployed). The wiring tests assert what breaks a deployment silently when it
is wrong: probes on routes that exist, one settings ConfigMap for every
Fathom pod, credentials only in Secrets, the HPA on the API, and network paths.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from tests.support import REPO

CHART = REPO / "helm" / "fathom"
HELM = REPO / ".fathom" / "tools" / "helm"
VALUES = {"default": (), "production": ("ci/production-values.yaml",), "external": ("ci/external-values.yaml",)}
CREDENTIAL_ENV = ("FATHOM_REDIS_URL", "FATHOM_REGISTRY_URL", "FATHOM_STORE__API_KEY", "REDIS_PASSWORD")


@pytest.fixture(scope="module")
def helm() -> str:
    path = str(HELM) if HELM.exists() else shutil.which("helm")
    if not path:
        pytest.fail("helm not found: run ./scripts/get-helm.sh (scripts/setup.sh does)")
    return path


def _args(values: tuple[str, ...], sets: dict[str, str]) -> list[str]:
    args = [x for v in values for x in ("-f", str(CHART / v))]
    return args + [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def render_text(helm: str, values: tuple[str, ...] = (), **sets: str) -> str:
    return subprocess.run([helm, "template", "rel", str(CHART), "--namespace", "rag", *_args(values, sets)],
                          capture_output=True, text=True, check=True).stdout


def render(helm: str, values: tuple[str, ...] = (), **sets: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(render_text(helm, values, **sets)) if d]


def by_kind(docs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def fathom_containers(docs: list[dict]) -> dict[str, dict]:
    """The containers running the Fathom image: the API, the worker and the store-init job."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "Job") and d["metadata"]["labels"]["app.kubernetes.io/name"] == "fathom":
            out[d["metadata"]["labels"]["app.kubernetes.io/component"]] = pod_spec(d)["containers"][0]
    return out


@pytest.mark.parametrize("name", list(VALUES))
def test_lint_strict(helm, name):
    proc = subprocess.run([helm, "lint", "--strict", str(CHART), *_args(VALUES[name], {})],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", list(VALUES))
def test_manifests_validate_against_kubernetes_schemas(helm, name):
    proc = subprocess.run([str(REPO / ".venv/bin/kubernetes-validate"), "--strict", "--quiet", "-"],
                          input=render_text(helm, VALUES[name]), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", list(VALUES))
def test_probes_point_at_routes_the_service_serves(helm, name):
    from fathom.service.api.health import router

    routes = {r.path for r in router.routes}
    api = by_kind(render(helm, VALUES[name]), "Deployment", "rel-fathom-api")
    container = pod_spec(api)["containers"][0]
    ports = {p["name"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes and get["port"] in ports, probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"   # checks models, Qdrant and cache
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"   # never restarts a pod for a Qdrant outage


@pytest.mark.parametrize("name", list(VALUES))
def test_api_worker_and_init_job_share_one_settings_configmap(helm, name):
    docs = render(helm, VALUES[name])
    containers = fathom_containers(docs)
    assert set(containers) == {"api", "worker", "store-init"}
    sources = {c: [s["configMapRef"]["name"] for s in container["envFrom"]] for c, container in containers.items()}
    assert sources["api"] == sources["worker"] == sources["store-init"] == ["rel-fathom-settings"]
    settings = by_kind(docs, "ConfigMap", "rel-fathom-settings")["data"]
    assert settings["FATHOM_STORE__BACKEND"] == "server" and settings["FATHOM_JOBS__CONSUMER_IN_API"] == "false"
    for container in containers.values():   # no setting is set per pod behind the ConfigMap's back
        assert all(not n.startswith("FATHOM_") or n in CREDENTIAL_ENV for n in env_of(container)), env_of(container)
    deployments = [by_kind(docs, "Deployment", f"rel-fathom-{c}") for c in ("api", "worker")]
    checksums = {d["spec"]["template"]["metadata"]["annotations"]["checksum/settings"] for d in deployments}
    assert len(checksums) == 1                # a settings change rolls both


@pytest.mark.parametrize("name", list(VALUES))
def test_credentials_are_in_secrets_never_in_configmaps(helm, name):
    docs = render(helm, VALUES[name])
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            looks_secret = re.search(r"(?i)password|api_key|token", key) and not key.endswith("_FILE")  # paths are fine
            assert key not in CREDENTIAL_ENV and not looks_secret, (cm, key)
            assert not re.search(r"redis://:[^$@]+@|postgresql\S*://[^/\s]+:[^@\s]+@", str(value)), (cm, key)
    for component, container in fathom_containers(docs).items():
        env = env_of(container)
        assert env["FATHOM_REGISTRY_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
        redis_url = env["FATHOM_REDIS_URL"]
        if name == "external":
            assert redis_url["valueFrom"]["secretKeyRef"] == {"name": "fathom-redis-url", "key": "url"}
            assert env["FATHOM_STORE__API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "qdrant-api-key"
        else:   # the bundled Redis: the password from its Secret, spliced in by the kubelet
            assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rel-redis", "key": "redis-password"}
            assert redis_url["value"] == "redis://:$(REDIS_PASSWORD)@rel-redis-master:6379/0"
            assert env["FATHOM_STORE__API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "rel-qdrant-apikey"
    bad = subprocess.run([helm, "template", "rel", str(CHART), "--set", "settings.FATHOM_STORE__API_KEY=abc"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "credential" in bad.stderr


@pytest.mark.parametrize("name", list(VALUES))
def test_hpa_targets_the_api_deployment_which_leaves_replicas_to_it(helm, name):
    docs = render(helm, VALUES[name])
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    api = by_kind(docs, "Deployment", "rel-fathom-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": api["metadata"]["name"]}
    assert "replicas" not in api["spec"]
    assert by_kind(docs, "PodDisruptionBudget", "rel-fathom-api")["spec"]["selector"]["matchLabels"] == \
        api["spec"]["selector"]["matchLabels"]


def test_default_install_bundles_a_three_node_qdrant_cluster_and_redis(helm):
    docs = render(helm)
    qdrant = by_kind(docs, "StatefulSet", "rel-qdrant")
    assert qdrant["spec"]["replicas"] == 3
    env = env_of(pod_spec(qdrant)["containers"][0])
    assert env["QDRANT__CLUSTER__ENABLED"]["value"] == "true"
    assert {p["name"] for p in by_kind(docs, "Service", "rel-qdrant-headless")["spec"]["ports"]} >= {"p2p"}
    assert by_kind(docs, "StatefulSet", "rel-redis-master")["spec"]["replicas"] == 1
    settings = by_kind(docs, "ConfigMap", "rel-fathom-settings")["data"]
    assert settings["FATHOM_STORE__URL"] == "http://rel-qdrant:6333"
    assert (settings["FATHOM_STORE__SHARD_NUMBER"], settings["FATHOM_STORE__REPLICATION_FACTOR"]) == ("3", "2")
    assert settings["FATHOM_STORE__READ_CONSISTENCY"] == "majority"
    one = subprocess.run([helm, "template", "rel", str(CHART), "--set", "qdrant.replicaCount=1"],
                         capture_output=True, text=True)
    assert one.returncode != 0 and "replicaCount must be >= 3" in one.stderr


def test_external_services_deploy_nothing_stateful(helm):
    docs = render(helm, VALUES["external"])
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    settings = by_kind(docs, "ConfigMap", "rel-fathom-settings")["data"]
    assert settings["FATHOM_STORE__URL"] == "https://qdrant.data.svc.cluster.local:6333"
    assert settings["FATHOM_STORE__WRITE_ORDERING"] == "strong"
    missing = subprocess.run([helm, "template", "rel", str(CHART), "--set", "qdrant.enabled=false"],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "store.url is required" in missing.stderr


@pytest.mark.parametrize("name", ["default", "external"])
def test_store_init_is_a_post_install_hook_running_the_cli_command(helm, name):
    from fathom.service.cli import build_parser

    job = by_kind(render(helm, VALUES[name]), "Job", "rel-fathom-store-init")
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    args = pod_spec(job)["containers"][0]["args"]
    parsed = build_parser().parse_args(args)   # the chart calls a command that exists, with valid arguments
    assert parsed.fn.__name__ == "cmd_store_init" and parsed.wait == 300
    assert parsed.tenant == ([] if name == "default" else ["acme", "globex"])


def test_network_policies_allow_only_the_paths_fathom_needs(helm):
    docs = render(helm)
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    api = policies["rel-fathom-api"]
    assert api["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    egress_ports = sorted(p["port"] for rule in api["egress"] for p in rule["ports"])
    assert egress_ports == [53, 53, 5432, 6333, 6334, 6379]
    qdrant_rule = next(r for r in api["egress"] if {"port": 6333, "protocol": "TCP"} in r["ports"])
    assert qdrant_rule["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "qdrant",
                                                                  "app.kubernetes.io/instance": "rel"}}}]
    assert policies["rel-fathom-worker"]["ingress"] == [] and policies["rel-fathom-store-init"]["ingress"] == []
    assert not any(6379 in [p["port"] for p in r["ports"]] for r in policies["rel-fathom-store-init"]["egress"])
    qdrant_in = policies["rel-fathom-qdrant"]["ingress"]
    assert [r["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in qdrant_in] == ["fathom", "qdrant"]
    redis_from = policies["rel-fathom-redis"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/component", "operator": "In", "values": ["api", "worker"]} in redis_from


def test_api_keys_are_hashes_only(helm):
    secret = by_kind(render(helm, VALUES["production"]), "Secret", "rel-fathom-api-keys")
    assert '"sha256"' in secret["stringData"]["api_keys.json"]
    bad = subprocess.run([helm, "template", "rel", str(CHART), "--set", "apiKeys.entries[0].id=x",
                          "--set", "apiKeys.entries[0].sha256=fth_plaintext_key"], capture_output=True, text=True)
    assert bad.returncode != 0 and "sha256" in bad.stderr


def test_tenant_config_and_rerank_settings_reach_the_pods(helm):
    docs = render(helm, VALUES["production"])
    assert '"min_confidence":0.6' in by_kind(docs, "ConfigMap", "rel-fathom-config")["data"]["tenants.json"]
    settings = by_kind(docs, "ConfigMap", "rel-fathom-settings")["data"]
    assert settings["FATHOM_RERANK__KIND"] == "cross-encoder" and settings["FATHOM_RERANK__DEPTH"] == "20"
    worker = by_kind(docs, "Deployment", "rel-fathom-worker")
    assert worker["spec"]["replicas"] == 2 and pod_spec(worker)["containers"][0]["args"] == ["worker"]
    assert pod_spec(by_kind(docs, "Deployment", "rel-fathom-api"))["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"] is True
