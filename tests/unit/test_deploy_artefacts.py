"""Deployment artefacts, checked statically: no Docker engine and no Kubernetes API run here.

docker-compose.yml, the Dockerfile, deploy/k8s/ and deploy/azure-pipelines.yml must agree with
the task queues of `workflows.contracts` and with each other (names, ports, service accounts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.services import SEARCH_ATTRIBUTES
from workflows.contracts import TASK_QUEUES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
PIPELINE = ROOT / "deploy" / "azure-pipelines.yml"
WORKERS = [queue.removeprefix("finrelease-") for queue in TASK_QUEUES]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


# ---------------------------------------------------------------- helpers


def compose_services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def image_tag(image: str) -> str | None:
    """The tag of `registry[:port]/repo:tag`, None when there is none (a port is no tag)."""
    last = image.split("/")[-1]
    return last.split(":", 1)[1] if ":" in last else None


def manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def deployment_of(worker: str) -> dict[str, Any]:
    found = [
        d
        for d in of_kind("Deployment")
        if d["spec"]["template"]["spec"]["containers"][0].get("args") == ["worker", worker]
    ]
    assert len(found) == 1, f"expected one Deployment running `worker {worker}`, found {found}"
    return found[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def pipeline_steps() -> list[dict[str, Any]]:
    pipeline = yaml.safe_load(PIPELINE.read_text())
    return [
        step
        for stage in pipeline["stages"]
        for job in stage["jobs"]
        for step in job.get("steps", [])
    ]


# ---------------------------------------------------------------- docker-compose


def test_compose_has_temporal_ui_postgresql_azurite_and_the_search_attribute_job():
    services = compose_services()
    images = {name: service.get("image", "") for name, service in services.items()}
    for repository in (
        "temporalio/auto-setup",
        "temporalio/ui",
        "temporalio/admin-tools",
        "postgres",
        "mcr.microsoft.com/azure-storage/azurite",
    ):
        assert any(image.split(":")[0] == repository for image in images.values()), repository


def test_every_task_queue_has_a_compose_worker_service_running_its_worker():
    commands = [service.get("command") for service in compose_services().values()]
    for worker in WORKERS:
        assert commands.count(["worker", worker]) == 1, f"no compose service runs `worker {worker}`"


def test_every_compose_image_is_pinned_by_a_tag_other_than_latest():
    for name, service in compose_services().items():
        image = service.get("image")
        assert image or service.get("build"), f"{name}: neither image nor build"
        if image:
            tag = image_tag(image)
            assert tag, f"{name}: image {image} has no tag"
            assert tag != "latest", f"{name}: image {image} is not pinned"


def test_worker_services_are_built_from_the_repository_dockerfile():
    for name, service in compose_services().items():
        if service.get("command", [None])[0] != "worker":
            continue
        build = service.get("build")
        assert build, f"{name}: a worker must be built from the Dockerfile"
        context = ROOT / build["context"]
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE


def test_every_compose_service_has_a_healthcheck_or_a_conditional_dependency():
    for name, service in compose_services().items():
        depends = service.get("depends_on") or {}
        conditional = isinstance(depends, dict) and all("condition" in d for d in depends.values())
        assert service.get("healthcheck") or (depends and conditional), name


def test_compose_dependencies_wait_on_services_that_can_satisfy_their_condition():
    services = compose_services()
    for name, service in services.items():
        for target, dependency in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if dependency["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), f"{target} has no healthcheck"
            if dependency["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is not a one-shot job"


def test_compose_temporal_persists_in_postgresql():
    temporal = compose_services()["temporal"]
    assert temporal["environment"]["DB"] == "postgres12"
    assert temporal["environment"]["POSTGRES_SEEDS"] in compose_services()
    assert temporal["depends_on"]["postgresql"]["condition"] == "service_healthy"


def test_compose_job_registers_every_search_attribute_the_devstack_registers():
    job = compose_services()["temporal-search-attributes"]
    script = "\n".join(job["command"])
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert f"{name}={kind}" in script, f"search attribute {name} ({kind}) not registered"


def test_compose_azurite_serves_blob_only_without_telemetry_at_the_devstack_version():
    azurite = compose_services()["azurite"]
    assert azurite["command"][0] == "azurite-blob"
    assert "--disableTelemetry" in azurite["command"]
    pinned = json.loads((ROOT / "devstack" / "package.json").read_text())["dependencies"]
    assert image_tag(azurite["image"]) == pinned["azurite"]


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_pins_its_base_image_by_tag():
    bases = [args for instruction, args in dockerfile_instructions() if instruction == "FROM"]
    assert bases, "Dockerfile has no FROM"
    for base in bases:
        image = base.split()[0]
        assert "$" not in image, f"base image {image} comes from a build argument"
        assert image_tag(image) not in (None, "latest"), f"base image {image} is not pinned"
        assert image.startswith("python:3.11"), image


def test_dockerfile_runs_as_a_numeric_non_root_user():
    users = [args for instruction, args in dockerfile_instructions() if instruction == "USER"]
    assert users, "Dockerfile never leaves root"
    user = users[-1].split(":")[0]
    # numeric, so Kubernetes can check runAsNonRoot; the same uid as the pods' securityContext
    assert user.isdigit() and int(user) != 0, users[-1]
    for deployment in of_kind("Deployment"):
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)


def test_dockerfile_installs_the_package_with_pg_dump_and_enters_finrelease():
    instructions = dockerfile_instructions()
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    assert "pip install ." in runs
    assert "postgresql-client" in runs
    entrypoint = [args for instruction, args in instructions if instruction == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["finrelease"]


def test_dockerignore_keeps_the_venv_and_local_state_out_of_the_build_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".finrelease", ".git", "devstack/node_modules"):
        assert path in ignored, path


# ---------------------------------------------------------------- Kubernetes


def test_every_task_queue_has_one_deployment_with_requests_and_limits():
    for worker in WORKERS:
        container = deployment_of(worker)["spec"]["template"]["spec"]["containers"][0]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (worker, bound)


def test_deployment_probes_target_the_health_port_the_worker_is_told_to_serve():
    for worker in WORKERS:
        container = deployment_of(worker)["spec"]["template"]["spec"]["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert ports["health"] == int(env["FINRELEASE_HEALTH_PORT"]), worker
        assert ports["metrics"] == int(env["FINRELEASE_METRICS_PORT"]), worker
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_workers_drain_within_the_pods_termination_grace_period():
    for worker in WORKERS:
        pod = deployment_of(worker)["spec"]["template"]["spec"]
        env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
        drain = float(env["FINRELEASE_SHUTDOWN_GRACE_SECONDS"])
        # after the drain the process still has to exit before the kubelet sends SIGKILL
        assert 0 < drain < pod["terminationGracePeriodSeconds"], worker


def test_deployments_run_non_root_read_only_unprivileged_with_tmp_in_memory_volume():
    for worker in WORKERS:
        pod = deployment_of(worker)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        security = container["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True, worker
        assert security["readOnlyRootFilesystem"] is True, worker
        assert security["allowPrivilegeEscalation"] is False, worker
        assert security["capabilities"]["drop"] == ["ALL"], worker
        assert "add" not in security["capabilities"], worker
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        tmp = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{worker}: no emptyDir on /tmp"


def test_every_deployment_uses_a_service_account_defined_in_the_manifests():
    accounts = {doc["metadata"]["name"]: doc for doc in of_kind("ServiceAccount")}
    used = [deployment_of(w)["spec"]["template"]["spec"]["serviceAccountName"] for w in WORKERS]
    for account in used:
        assert account in accounts, f"ServiceAccount {account} is not in deploy/k8s"
    assert len(set(used)) == len(WORKERS), "each worker has its own identity"


def test_the_k8s_worker_runs_as_the_account_its_rbac_binds():
    binding = of_kind("RoleBinding")[0]
    account = deployment_of("k8s")["spec"]["template"]["spec"]["serviceAccountName"]
    assert {"kind": "ServiceAccount", "name": account, "namespace": "finrelease"} in binding[
        "subjects"
    ]


def test_the_k8s_worker_is_bound_in_the_namespace_of_every_example_tenant():
    # issue 17: the binding was in `tenant-acme` while tenants live in `odoo-<tenant>`; on a
    # real cluster every call of the k8s worker was 403, and no double authorises anything.
    inventory = yaml.safe_load((ROOT / "examples" / "tenants.yaml").read_text())
    namespaces = {tenant["namespace"] for tenant in inventory["tenants"]}
    bound = {
        doc["metadata"]["namespace"]
        for doc in of_kind("RoleBinding")
        if doc["roleRef"]
        == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "finrelease-k8s-worker",
        }
    }
    assert namespaces and namespaces <= bound, sorted(namespaces - bound)


def test_workload_identity_label_and_client_id_annotation_go_together():
    accounts = {doc["metadata"]["name"]: doc for doc in of_kind("ServiceAccount")}
    with_identity = set()
    for worker in WORKERS:
        pod = deployment_of(worker)["spec"]["template"]
        account = accounts[pod["spec"]["serviceAccountName"]]
        uses = pod["metadata"]["labels"].get("azure.workload.identity/use") == "true"
        annotations = account["metadata"].get("annotations") or {}
        assert uses == ("azure.workload.identity/client-id" in annotations), worker
        if uses:
            with_identity.add(worker)
    # Blob Storage (backups; evidence, filestore, Azure Monitor) needs it; nothing else does.
    assert with_identity == {"db", "azure"}


def test_deployments_reference_only_config_maps_defined_in_the_manifests():
    config_maps = {doc["metadata"]["name"] for doc in of_kind("ConfigMap")}
    for worker in WORKERS:
        container = deployment_of(worker)["spec"]["template"]["spec"]["containers"][0]
        refs = [
            item["configMapRef"]["name"] for item in container["envFrom"] if "configMapRef" in item
        ]
        refs += [
            item["valueFrom"]["configMapKeyRef"]["name"]
            for item in container["env"]
            if "configMapKeyRef" in item.get("valueFrom", {})
        ]
        assert refs and set(refs) <= config_maps, worker


def test_every_task_queue_has_a_scaler_on_its_own_deployment():
    temporal = next(
        d for d in of_kind("ConfigMap") if d["metadata"]["name"] == "finrelease-temporal"
    )
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in of_kind("ScaledObject")}
    autoscaled = {
        doc["spec"]["scaleTargetRef"]["name"] for doc in of_kind("HorizontalPodAutoscaler")
    }
    for queue, worker in zip(TASK_QUEUES, WORKERS, strict=True):
        name = deployment_of(worker)["metadata"]["name"]
        assert name in scaled or name in autoscaled, f"no scaler for {queue}"
        if name in scaled:
            (trigger,) = scaled[name]["spec"]["triggers"]
            assert trigger["type"] == "temporal"
            assert trigger["metadata"]["taskQueue"] == queue
            assert trigger["metadata"]["endpoint"] == temporal["data"]["TEMPORAL_ADDRESS"]
            assert trigger["metadata"]["namespace"] == temporal["data"]["TEMPORAL_NAMESPACE"]
            assert trigger["metadata"]["queueTypes"] == (
                "workflow" if worker == "workflows" else "activity"
            )


def test_kustomization_lists_every_manifest_in_deploy_k8s():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert "rbac.yaml" in files


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (offline kustomize)")
def test_kustomize_renders_every_manifest_once():
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    kinds_and_names = [
        (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        for doc in yaml.safe_load_all(rendered.stdout)
    ]
    assert sorted(kinds_and_names) == sorted(
        (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        for doc in manifests()
    )


def test_kustomization_image_override_names_the_deployments_image():
    (override,) = yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]
    for worker in WORKERS:
        image = deployment_of(worker)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.rsplit(":", 1)[0] == override["name"], worker
        assert image_tag(image) not in (None, "latest"), worker


# ---------------------------------------------------------------- Azure Pipelines


def test_pipeline_starts_the_release_with_wait():
    scripts = [step.get("bash", "") for step in pipeline_steps()]
    assert any("finrelease start" in s and "--wait" in s for s in scripts)


def test_pipeline_documents_how_approvers_are_notified_and_approve():
    text = PIPELINE.read_text()
    for words in ("notify", "FINRELEASE_TEAMS_WEBHOOKS", "finrelease approve", "Temporal UI"):
        assert words in text, words


def _pin_step() -> dict[str, Any]:
    """The step that writes the digest into the spec (the one that edits release.yaml)."""
    (step,) = [
        s
        for s in pipeline_steps()
        if "release/release.yaml" in s.get("bash", "")
        and "@sha256" in s.get("bash", "")
        and "finrelease start" not in s["bash"]
    ]
    return step


def _run_pin_step(tmp_path: Path, image_ref: str) -> subprocess.CompletedProcess[str]:
    """Run the pipeline's pin step on a copy of examples/ laid out as the pipeline expects."""
    release = tmp_path / "release"
    shutil.copytree(ROOT / "examples", release)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "IMAGE_REF": image_ref,
        "REQUESTED_BY": "pipeline@example.com",
    }
    return subprocess.run(
        ["bash", "-c", _pin_step()["bash"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_pipeline_pins_the_pushed_digest_into_a_spec_that_validates(tmp_path: Path):
    image_ref = "acr.example.io/odoo@sha256:" + "ab" * 32
    result = _run_pin_step(tmp_path, image_ref)
    assert result.returncode == 0, result.stderr + result.stdout
    spec = yaml.safe_load((tmp_path / "release" / "release.yaml").read_text())
    assert spec["image"] == image_ref and DIGEST.search(spec["image"])
    assert spec["requested_by"] == "pipeline@example.com"
    assert "sha256:" in result.stdout  # `spec validate` printed the spec's sha256


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_pipeline_refuses_an_image_without_a_digest(tmp_path: Path):
    before = (ROOT / "examples" / "release.yaml").read_text()
    result = _run_pin_step(tmp_path, "acr.example.io/odoo:1234")
    assert result.returncode == 2
    assert "not pinned by digest" in result.stdout + result.stderr
    assert (tmp_path / "release" / "release.yaml").read_text() == before
