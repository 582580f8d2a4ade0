"""The shipped container and manifests run the service with the least it needs."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _docs() -> dict[str, dict]:
    found = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


def test_pod_runs_non_root_read_only_without_capabilities() -> None:
    pod = _docs()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in sc["capabilities"]
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp"}  # the only writable path, an emptyDir


def test_the_compiled_kernels_cache_is_warmed_in_the_image_and_writable_in_the_pod() -> None:
    """numba loads its cache only from a writable directory: the image warms one, the pod
    copies it to its writable emptyDir and points NUMBA_CACHE_DIR there, with the same
    hardening as the service container."""
    text = DOCKERFILE.read_text()
    assert "NUMBA_CACHE_DIR=/app/.numba-cache" in text and "warm_kernels()" in text
    # a cache for a generic x86-64, not the build machine's CPU: every node loads it
    assert "NUMBA_CPU_NAME=generic" in text
    pod = _docs()["Deployment"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == pod["containers"][0]["image"]
    assert init["command"] == ["cp", "-r", "/app/.numba-cache/.", "/tmp/numba-cache/"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NUMBA_CACHE_DIR"] == "/tmp/numba-cache"
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert any(env["NUMBA_CACHE_DIR"].startswith(path + "/") for path in writable)


def test_pod_has_requests_limits_and_probes_on_real_health() -> None:
    (container,) = _docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_disruption_budget_selects_the_deployment() -> None:
    docs = _docs()
    pdb = docs["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_secrets_come_from_secrets_not_the_configmap() -> None:
    (container,) = _docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["CHURNGUARD_KAFKA_PASSWORD"]["valueFrom"]
    assert "secretKeyRef" in env["CHURNGUARD_MODEL_KEY"]["valueFrom"]
    assert "password" not in (DEPLOY / "configmap.yaml").read_text().lower().replace(
        "sasl_password_env", ""
    )


def test_image_runs_as_a_non_root_user() -> None:
    lines = [line.split() for line in DOCKERFILE.read_text().splitlines() if line.strip()]
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users and users[-1] not in ("root", "0")
