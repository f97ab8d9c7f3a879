"""The finrelease-k8s activities, run by the official client against the API double."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from kubernetes import config
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.kubernetes import KubernetesActivities, module_update_job_name
from devstack.k8s import KubernetesDouble, RolloutMode
from devstack.k8s.store import DEPLOYMENTS, JOBS, PODS
from governance.inventory import Tenant
from workflows.contracts import (
    ErrorType,
    ImageChange,
    MaintenanceRequest,
    ModuleUpdateRequest,
    RolloutWait,
    StateRestore,
    TenantTask,
)

pytestmark = pytest.mark.integration

OLD = "acr.example.io/odoo@sha256:" + "a" * 64
NEW = "acr.example.io/odoo@sha256:" + "b" * 64
RELEASE = "FIN-2026-11-042"


@pytest.fixture
async def k8s() -> AsyncIterator[KubernetesDouble]:
    async with KubernetesDouble() as double:
        yield double


@pytest.fixture
def activities(k8s: KubernetesDouble, tmp_path: Path) -> Iterator[KubernetesActivities]:
    kubeconfig = k8s.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    yield KubernetesActivities(api_client, request_timeout=10, poll_seconds=0.01)
    api_client.close()


@pytest.fixture
def tenant(k8s: KubernetesDouble) -> Tenant:
    name = f"t{uuid.uuid4().hex[:8]}"
    deployments = {"web": f"{name}-web", "worker": f"{name}-worker", "cron": f"{name}-cron"}
    k8s.seed_tenant(name, deployments, OLD)
    return Tenant(
        name=name,
        tier="shared",
        namespace=name,
        deployments=deployments,
        db_server="main",
        database=f"{name}_prod",
        filestore=f"filestore/{name}",
        url=f"https://{name}.example.io",
        timezone="Europe/Berlin",
        calendar="de-close",
    )


@pytest.fixture
def heartbeats() -> list[tuple]:
    return []


@pytest.fixture
def env(heartbeats: list[tuple]) -> ActivityEnvironment:
    environment = ActivityEnvironment()
    environment.on_heartbeat = lambda *details: heartbeats.append(details)
    return environment


def deployment(k8s: KubernetesDouble, tenant: Tenant, role: str) -> dict:
    return k8s.store.get(DEPLOYMENTS, tenant.namespace, tenant.deployments[role])


def containers(obj: dict) -> dict[str, dict]:
    return {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}


async def test_running_state_records_images_replicas_revision_and_release(env, activities, tenant):
    state = await env.run(activities.read_running_state, TenantTask(RELEASE, tenant))
    assert state.tenant == tenant.name
    assert [d.role for d in state.deployments] == ["web", "worker", "cron"]
    web = state.deployments[0]
    assert web.images == {"odoo": OLD, "log-shipper": "cr.fluentbit.io/fluent/fluent-bit:3.1.9"}
    assert (web.replicas, web.revision, web.release_annotation, web.generation) == (2, "1", "", 1)
    assert state.image_of("odoo") == OLD


async def test_set_image_changes_only_the_odoo_container_and_stamps_the_release(
    env, activities, tenant, k8s
):
    before = deployment(k8s, tenant, "web")
    result = await env.run(activities.set_image, ImageChange(RELEASE, tenant, NEW))
    assert result.changed == list(tenant.deployments.values()) and result.unchanged == []
    for role in tenant.deployments:
        after = deployment(k8s, tenant, role)
        assert containers(after)["odoo"]["image"] == NEW
        assert (
            after["spec"]["template"]["metadata"]["annotations"]["finrelease/release-id"] == RELEASE
        )
    after = deployment(k8s, tenant, "web")
    assert containers(after)["log-shipper"] == containers(before)["log-shipper"]
    unchanged_odoo = {k: v for k, v in containers(after)["odoo"].items() if k != "image"}
    assert unchanged_odoo == {k: v for k, v in containers(before)["odoo"].items() if k != "image"}
    assert (
        after["spec"]["template"]["spec"]["volumes"]
        == before["spec"]["template"]["spec"]["volumes"]
    )


async def test_second_set_image_does_not_bump_the_generation(env, activities, tenant, k8s):
    await env.run(activities.set_image, ImageChange(RELEASE, tenant, NEW))
    generation = deployment(k8s, tenant, "web")["metadata"]["generation"]
    retry = await env.run(activities.set_image, ImageChange(RELEASE, tenant, NEW))
    assert retry.changed == [] and retry.unchanged == list(tenant.deployments.values())
    assert deployment(k8s, tenant, "web")["metadata"]["generation"] == generation == 2


async def test_set_image_names_a_missing_odoo_container(env, activities, tenant):
    wrong = replace(tenant, container="odoo-server")
    with pytest.raises(ApplicationError) as failure:
        await env.run(activities.set_image, ImageChange(RELEASE, wrong, NEW))
    assert failure.value.type == ErrorType.CONFIGURATION_MISSING and failure.value.non_retryable
    assert (
        "odoo-server" in failure.value.message
        and tenant.deployments["web"] in failure.value.message
    )


async def test_rollout_wait_returns_once_every_deployment_is_ready(
    env, activities, tenant, k8s, heartbeats
):
    k8s.set_mode("deployment", tenant.namespace, "*", RolloutMode.succeed(after_polls=3))
    await env.run(activities.set_image, ImageChange(RELEASE, tenant, NEW))
    status = await env.run(
        activities.wait_for_rollout, RolloutWait(RELEASE, tenant, poll_seconds=0.01)
    )
    assert status.ready == list(tenant.deployments.values())
    assert len(heartbeats) >= 2  # one per poll: at least one poll saw the rollout in progress
    assert heartbeats[0][0]["waiting"]
    state = await env.run(activities.read_running_state, TenantTask(RELEASE, tenant))
    assert {d.revision for d in state.deployments} == {"2"}


async def test_stuck_rollout_fails_non_retryable_with_the_condition_message(
    env, activities, tenant, k8s
):
    stuck = f'ReplicaSet "{tenant.deployments["worker"]}-7d9f" has timed out progressing.'
    k8s.set_mode(
        "deployment", tenant.namespace, tenant.deployments["worker"], RolloutMode.stuck(2, stuck)
    )
    await env.run(activities.set_image, ImageChange(RELEASE, tenant, NEW))
    with pytest.raises(ApplicationError) as failure:
        await env.run(activities.wait_for_rollout, RolloutWait(RELEASE, tenant, poll_seconds=0.01))
    assert failure.value.type == ErrorType.ROLLOUT_STUCK and failure.value.non_retryable
    assert f"{tenant.namespace}/{tenant.deployments['worker']}" in failure.value.message
    assert stuck in failure.value.message


async def test_module_update_job_runs_the_update_command_with_the_tenant_configuration(
    env, activities, tenant, k8s
):
    k8s.set_mode("job", tenant.namespace, "*", RolloutMode.succeed(2, log="modules updated\n"))
    request = ModuleUpdateRequest(RELEASE, tenant, NEW, ["account", "l10n_de"])
    result = await env.run(activities.run_module_update, request)
    assert result.succeeded and result.job_name == module_update_job_name(RELEASE, tenant.name)
    assert result.log_tail.endswith("modules updated\n")
    job = k8s.store.get(JOBS, tenant.namespace, result.job_name)
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] == 4 * 3600
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == NEW
    # Odoo's arguments go to the image's entrypoint, which adds the database settings.
    assert "command" not in container
    assert container["args"] == [
        "odoo",
        "-u",
        "account,l10n_de",
        "-d",
        tenant.database,
        "--stop-after-init",
    ]
    web_odoo = containers(deployment(k8s, tenant, "web"))["odoo"]
    assert (
        container["env"] == web_odoo["env"]
        and container["volumeMounts"] == web_odoo["volumeMounts"]
    )


async def test_module_update_uses_the_inventory_command_when_given(env, activities, tenant, k8s):
    custom = replace(tenant, update_command=["/opt/update.sh", "--db={database}", "{modules}"])
    await env.run(activities.run_module_update, ModuleUpdateRequest(RELEASE, custom, NEW, ["sale"]))
    job = k8s.store.get(JOBS, tenant.namespace, module_update_job_name(RELEASE, tenant.name))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["/opt/update.sh", f"--db={tenant.database}", "sale"]
    assert "command" not in container


async def test_module_update_with_an_image_that_cannot_be_pulled_fails_fast(
    env, activities, tenant, k8s
):
    k8s.set_mode("job", tenant.namespace, "*", RolloutMode.image_pull_fails())
    missing = "registry.example.com/odoo:does-not-exist"
    with pytest.raises(ApplicationError) as failure:
        await env.run(
            activities.run_module_update, ModuleUpdateRequest(RELEASE, tenant, missing, ["account"])
        )
    assert failure.value.type == ErrorType.MODULE_UPDATE_FAILED and failure.value.non_retryable
    assert f"image {missing} ImagePullBackOff" in failure.value.message


async def test_failed_module_update_is_non_retryable_and_carries_the_log_tail(
    env, activities, tenant, k8s
):
    log = (
        "".join(f"INFO loading module {i}\n" for i in range(100))
        + "ERROR: column x does not exist\n"
    )
    k8s.set_mode("job", tenant.namespace, "*", RolloutMode.fail(log))
    with pytest.raises(ApplicationError) as failure:
        await env.run(
            activities.run_module_update, ModuleUpdateRequest(RELEASE, tenant, NEW, ["account"])
        )
    assert failure.value.type == ErrorType.MODULE_UPDATE_FAILED and failure.value.non_retryable
    assert "ERROR: column x does not exist" in failure.value.message
    assert "BackoffLimitExceeded" in failure.value.message
    assert "loading module 0\n" not in failure.value.message  # only the tail
    assert failure.value.details[0]["log_tail"].endswith("ERROR: column x does not exist\n")


async def test_module_update_retry_adopts_the_existing_job(env, activities, tenant, k8s):
    request = ModuleUpdateRequest(RELEASE, tenant, NEW, ["account"])
    first = await env.run(activities.run_module_update, request)
    uid = k8s.store.get(JOBS, tenant.namespace, first.job_name)["metadata"]["uid"]
    retry = await env.run(activities.run_module_update, request)
    assert retry.job_name == first.job_name and retry.succeeded
    assert k8s.store.get(JOBS, tenant.namespace, first.job_name)["metadata"]["uid"] == uid
    assert len(k8s.store.list(JOBS, tenant.namespace)["items"]) == 1
    assert len(k8s.store.list(PODS, tenant.namespace)["items"]) == 1


async def test_existing_job_with_another_image_is_refused(env, activities, tenant):
    await env.run(
        activities.run_module_update, ModuleUpdateRequest(RELEASE, tenant, OLD, ["account"])
    )
    with pytest.raises(ApplicationError) as failure:
        await env.run(
            activities.run_module_update, ModuleUpdateRequest(RELEASE, tenant, NEW, ["account"])
        )
    assert failure.value.type == ErrorType.MODULE_UPDATE_FAILED and failure.value.non_retryable
    assert OLD in failure.value.message


async def test_restore_brings_back_the_exact_previous_images_and_replicas(
    env, activities, tenant, k8s
):
    previous = await env.run(activities.read_running_state, TenantTask(RELEASE, tenant))
    await env.run(activities.set_image, ImageChange(RELEASE, tenant, NEW))
    await env.run(
        activities.set_maintenance,
        MaintenanceRequest(RELEASE, tenant, enabled=True, state=previous),
    )
    status = await env.run(
        activities.restore_running_state, StateRestore(RELEASE, tenant, previous)
    )
    assert status.ready == list(tenant.deployments.values())
    restored = await env.run(activities.read_running_state, TenantTask(RELEASE, tenant))
    for before, after in zip(previous.deployments, restored.deployments, strict=True):
        assert after.images == before.images
        assert after.replicas == before.replicas
        assert after.release_annotation == before.release_annotation == ""
        assert after.revision == "3"  # like `rollout undo`: the old template is the newest revision


async def test_maintenance_scales_every_workload_to_zero_and_back_to_the_recorded_replicas(
    env, activities, tenant, k8s
):
    state = await env.run(activities.read_running_state, TenantTask(RELEASE, tenant))
    replicas = {d.role: d.replicas for d in state.deployments}
    on = await env.run(activities.set_maintenance, MaintenanceRequest(RELEASE, tenant, True, state))
    assert sorted(on.ready) == sorted(tenant.deployments.values())
    for role in ("web", "worker", "cron"):
        scaled = deployment(k8s, tenant, role)
        assert scaled["spec"]["replicas"] == 0 and scaled["status"].get("replicas", 0) == 0
    # a retry of "enable" finds zeros: the replicas to return to come from the recorded state
    await env.run(activities.set_maintenance, MaintenanceRequest(RELEASE, tenant, True, state))
    off = await env.run(
        activities.set_maintenance, MaintenanceRequest(RELEASE, tenant, False, state)
    )
    assert sorted(off.ready) == sorted(tenant.deployments.values())
    for role, count in replicas.items():
        back = deployment(k8s, tenant, role)
        assert back["spec"]["replicas"] == count and back["status"]["availableReplicas"] == count
    assert replicas["web"] == 2  # the seed: the web count is really restored, not defaulted


async def test_maintenance_with_a_missing_workload_fails_before_scaling_anything(
    env, activities, tenant, k8s
):
    state = await env.run(activities.read_running_state, TenantTask(RELEASE, tenant))
    ghostly = replace(tenant, deployments={**tenant.deployments, "cron": "ghost-cron"})
    with pytest.raises(ApplicationError) as failure:
        await env.run(activities.set_maintenance, MaintenanceRequest(RELEASE, ghostly, True, state))
    assert failure.value.type == ErrorType.NOT_FOUND and failure.value.non_retryable
    assert f"{tenant.namespace}/ghost-cron" in failure.value.message
    for role in ("web", "worker"):
        assert deployment(k8s, tenant, role)["spec"]["replicas"] > 0  # untouched


async def test_missing_deployment_is_a_non_retryable_not_found(env, activities, tenant):
    ghost = replace(tenant, deployments={"web": "ghost-web"})
    with pytest.raises(ApplicationError) as failure:
        await env.run(activities.read_running_state, TenantTask(RELEASE, ghost))
    assert failure.value.type == ErrorType.NOT_FOUND and failure.value.non_retryable
    assert f"{tenant.namespace}/ghost-web" in failure.value.message


def test_job_name_is_a_dns_label_and_distinct_when_shortened():
    assert module_update_job_name("fin-42", "acme") == "finrelease-update-fin-42-acme"
    long_a = module_update_job_name("FIN-2026-11-042." + "x" * 40, "tenant-with-a-long-name")
    long_b = module_update_job_name("FIN-2026-11-042." + "x" * 40, "tenant-with-a-long-namf")
    for name in (long_a, long_b, module_update_job_name("FIN.42", "Acme")):
        assert len(name) <= 63 and name == name.lower()
        assert (
            name[0].isalnum()
            and name[-1].isalnum()
            and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
        )
    assert long_a != long_b
    assert module_update_job_name("FIN.42", "acme") != module_update_job_name("fin-42", "acme")


def test_from_environment_uses_the_kubeconfig_and_context(k8s, tmp_path):
    kubeconfig = k8s.write_kubeconfig(tmp_path / "kubeconfig")
    activities = KubernetesActivities.from_environment(
        {
            "FINRELEASE_KUBECONFIG": str(kubeconfig),
            "FINRELEASE_KUBE_CONTEXT": "finrelease-simulated",
        }
    )
    assert activities._api_client.configuration.host == k8s.url
    with pytest.raises(ApplicationError) as failure:
        KubernetesActivities.from_environment({})
    assert failure.value.type == ErrorType.CONFIGURATION_MISSING


def test_module_update_deadline_must_be_a_positive_number_of_seconds() -> None:
    from kubernetes.client import ApiClient

    with pytest.raises(ValueError, match="module_update_deadline_seconds: expected a positive"):
        KubernetesActivities(ApiClient(), module_update_deadline_seconds=0)
