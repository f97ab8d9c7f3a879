"""The Kubernetes API double behaves like an API server where finrelease depends on it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from devstack.k8s import KubernetesDouble, RolloutMode

pytestmark = pytest.mark.integration

NS = "acme"
DEPLOYMENTS = {"web": "odoo-web", "worker": "odoo-worker", "cron": "odoo-cron"}
WEB = f"/apis/apps/v1/namespaces/{NS}/deployments/odoo-web"
SMP = {"Content-Type": "application/strategic-merge-patch+json"}
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
async def k8s() -> AsyncIterator[KubernetesDouble]:
    async with KubernetesDouble() as double:
        double.seed_tenant(NS, DEPLOYMENTS, "registry.example/odoo:17.0-1")
        yield double


@pytest.fixture
async def api(k8s: KubernetesDouble) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=k8s.url) as http:
        yield http


def containers(deployment: dict) -> dict[str, dict]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


async def test_created_object_gets_uid_timestamp_generation_and_resource_version(api):
    body = {"metadata": {"name": "other"}, "spec": (await api.get(WEB)).json()["spec"]}
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    created = await api.post(f"/apis/apps/v1/namespaces/{NS}/deployments", json=body)
    assert created.status_code == 201
    meta = created.json()["metadata"]
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and int(meta["resourceVersion"]) > 0
    assert created.json()["status"] == {}


async def test_generation_increments_only_on_spec_changes(api):
    start = (await api.get(WEB)).json()["metadata"]["generation"]
    labelled = await api.patch(WEB, json={"metadata": {"labels": {"team": "finance"}}}, headers=SMP)
    assert labelled.json()["metadata"]["generation"] == start
    status = await api.patch(f"{WEB}/status", json={"status": {"collisionCount": 1}}, headers=MERGE)
    assert status.json()["metadata"]["generation"] == start
    scaled = await api.patch(WEB, json={"spec": {"replicas": 5}}, headers=SMP)
    assert scaled.json()["metadata"]["generation"] == start + 1


async def test_no_op_patch_keeps_resource_version(api):
    before = (await api.get(WEB)).json()
    replicas = before["spec"]["replicas"]
    after = await api.patch(WEB, json={"spec": {"replicas": replicas}}, headers=SMP)
    assert after.json()["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_update_with_stale_resource_version_is_refused_with_409_conflict(api):
    stale = (await api.get(WEB)).json()
    await api.patch(WEB, json={"spec": {"replicas": 4}}, headers=SMP)
    stale["spec"]["replicas"] = 7
    refused = await api.put(WEB, json=stale)
    assert refused.status_code == 409
    assert refused.json()["reason"] == "Conflict"
    assert "the object has been modified" in refused.json()["message"]
    locked_patch = {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}}
    assert (await api.patch(WEB, json=locked_patch, headers=MERGE)).status_code == 409
    assert (await api.get(WEB)).json()["spec"]["replicas"] == 4


async def test_strategic_merge_patch_merges_containers_by_name(api):
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "odoo",
                            "image": "registry.example/odoo:17.0-2",
                            "env": [{"name": "ODOO_ROLE", "value": "web-canary"}],
                        }
                    ]
                }
            }
        }
    }
    patched = (await api.patch(WEB, json=patch, headers=SMP)).json()
    odoo, sidecar = containers(patched)["odoo"], containers(patched)["log-shipper"]
    assert odoo["image"] == "registry.example/odoo:17.0-2"
    env = {e["name"]: e for e in odoo["env"]}
    assert env["ODOO_ROLE"]["value"] == "web-canary"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"  # merged by name
    assert [m["mountPath"] for m in odoo["volumeMounts"]] == ["/var/lib/odoo", "/etc/odoo"]
    assert sidecar["image"].startswith("cr.fluentbit.io/")
    assert len(patched["spec"]["template"]["spec"]["volumes"]) == 2


async def test_strategic_merge_delete_directive_and_null_remove_entries(api):
    patch = {
        "metadata": {"labels": {"finrelease/role": None}},
        "spec": {
            "template": {"spec": {"containers": [{"name": "log-shipper", "$patch": "delete"}]}}
        },
    }
    patched = (await api.patch(WEB, json=patch, headers=SMP)).json()
    assert list(containers(patched)) == ["odoo"]
    assert "finrelease/role" not in patched["metadata"]["labels"]


async def test_json_merge_patch_replaces_lists_whole(api):
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "odoo", "image": "x:1"}]}}}}
    patched = await api.patch(WEB, json=patch, headers=MERGE)
    assert [c["name"] for c in patched.json()["spec"]["template"]["spec"]["containers"]] == ["odoo"]
    assert "env" not in containers(patched.json())["odoo"]


async def test_json_patch_applies_operations_and_refuses_an_object_body(api):
    operations = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/1/image",
            "value": "fluent-bit:4",
        },
        {"op": "add", "path": "/metadata/labels/tier", "value": "dedicated"},
    ]
    patched = (await api.patch(WEB, json=operations, headers=JSON_PATCH)).json()
    assert containers(patched)["log-shipper"]["image"] == "fluent-bit:4"
    assert patched["metadata"]["labels"]["tier"] == "dedicated"
    # the official client's default PATCH content type: a dict body must be refused
    refused = await api.patch(WEB, json={"spec": {"replicas": 1}}, headers=JSON_PATCH)
    assert refused.status_code == 400 and refused.json()["kind"] == "Status"
    failed_test = [{"op": "test", "path": "/spec/replicas", "value": 99}]
    assert (await api.patch(WEB, json=failed_test, headers=JSON_PATCH)).status_code == 422


async def test_status_changes_only_through_the_status_subresource(api):
    current = (await api.get(WEB)).json()
    current["status"]["availableReplicas"] = 99
    current["metadata"]["labels"]["put"] = "yes"
    replaced = (await api.put(WEB, json=current)).json()
    assert replaced["status"].get("availableReplicas") != 99
    assert replaced["metadata"]["labels"]["put"] == "yes"
    status_update = {"spec": {"replicas": 9}, "status": {"availableReplicas": 99}}
    via_status = (await api.patch(f"{WEB}/status", json=status_update, headers=MERGE)).json()
    assert via_status["status"]["availableReplicas"] == 99
    assert via_status["spec"]["replicas"] == 2  # spec ignored on the status subresource


async def test_put_replaces_the_whole_object(api):
    current = (await api.get(WEB)).json()
    current["metadata"]["labels"] = {"app.kubernetes.io/instance": "odoo-web"}
    current["spec"]["template"]["spec"]["containers"] = [containers(current)["odoo"]]
    replaced = (await api.put(WEB, json=current)).json()
    assert replaced["metadata"]["labels"] == {"app.kubernetes.io/instance": "odoo-web"}
    assert list(containers(replaced)) == ["odoo"]
    assert replaced["metadata"]["generation"] == current["metadata"]["generation"] + 1


async def test_list_filters_by_label_selector(api):
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"

    async def names(selector: str) -> list[str]:
        listed = (await api.get(path, params={"labelSelector": selector})).json()
        assert listed["kind"] == "DeploymentList"
        return sorted(item["metadata"]["name"] for item in listed["items"])

    assert await names("finrelease/role=web") == ["odoo-web"]
    assert await names("finrelease/role!=web") == ["odoo-cron", "odoo-worker"]
    assert await names("finrelease/role in (cron,worker)") == ["odoo-cron", "odoo-worker"]
    assert await names("app.kubernetes.io/name,!missing") == [
        "odoo-cron",
        "odoo-web",
        "odoo-worker",
    ]
    assert await names("finrelease/role notin (web,cron)") == ["odoo-worker"]


async def test_missing_objects_answer_a_kubernetes_not_found_status(api):
    missing = await api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    }
    no_namespace = await api.post(
        "/apis/batch/v1/namespaces/ghost/jobs", json={"metadata": {"name": "j"}}
    )
    assert no_namespace.status_code == 404
    assert no_namespace.json()["message"] == 'namespaces "ghost" not found'


async def test_creating_an_existing_object_is_already_exists(api):
    existing = (await api.get(WEB)).json()
    again = await api.post(f"/apis/apps/v1/namespaces/{NS}/deployments", json=existing)
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"


async def test_rollout_completes_after_the_configured_number_of_polls(k8s, api):
    k8s.set_mode("deployment", NS, "odoo-web", RolloutMode.succeed(after_polls=3))
    await api.patch(
        WEB, json={"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}, headers=SMP
    )
    polls = [(await api.get(WEB)).json() for _ in range(3)]
    for in_progress in polls[:2]:
        assert in_progress["status"]["observedGeneration"] == in_progress["metadata"]["generation"]
        assert in_progress["status"]["updatedReplicas"] < in_progress["spec"]["replicas"]
        assert in_progress["status"]["conditions"][1]["reason"] == "ReplicaSetUpdated"
    done = polls[2]
    assert done["status"]["updatedReplicas"] == done["status"]["availableReplicas"] == 2
    assert done["status"]["conditions"][1]["reason"] == "NewReplicaSetAvailable"
    assert done["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


async def test_stuck_rollout_reports_progress_deadline_exceeded(k8s, api):
    k8s.set_mode("deployment", NS, "*", RolloutMode.stuck(after_polls=2))
    await api.patch(
        WEB, json={"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}, headers=SMP
    )
    await api.get(WEB)
    stuck = (await api.get(WEB)).json()
    progressing = next(c for c in stuck["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["status"] == "False"
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert progressing["message"].endswith("has timed out progressing.")


async def test_job_fails_with_the_given_log_on_its_pod(k8s, api):
    k8s.set_mode("job", NS, "update", RolloutMode.fail("line 1\nline 2\nERROR: column missing\n"))
    job = {
        "metadata": {"name": "update"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "odoo", "image": "o:1"}]}
            },
        },
    }
    created = await api.post(f"/apis/batch/v1/namespaces/{NS}/jobs", json=job)
    assert created.status_code == 201
    failed = (await api.get(f"/apis/batch/v1/namespaces/{NS}/jobs/update")).json()
    assert failed["status"]["failed"] == 1
    assert [c["type"] for c in failed["status"]["conditions"]] == ["FailureTarget", "Failed"]
    assert failed["status"]["conditions"][1]["reason"] == "BackoffLimitExceeded"
    pods = (
        await api.get(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": "job-name=update"})
    ).json()
    assert [p["status"]["phase"] for p in pods["items"]] == ["Failed"]
    pod = pods["items"][0]["metadata"]["name"]
    tail = await api.get(f"/api/v1/namespaces/{NS}/pods/{pod}/log", params={"tailLines": "1"})
    assert tail.text == "ERROR: column missing\n"


async def test_job_template_is_immutable(api):
    job = {
        "metadata": {"name": "frozen"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "a:1"}]}
            }
        },
    }
    await api.post(f"/apis/batch/v1/namespaces/{NS}/jobs", json=job)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}}
    refused = await api.patch(
        f"/apis/batch/v1/namespaces/{NS}/jobs/frozen", json=patch, headers=SMP
    )
    assert refused.status_code == 422 and refused.json()["reason"] == "Invalid"


async def test_modes_can_be_set_through_the_admin_endpoint(k8s, api):
    answer = await api.post(
        "/_double/modes",
        json={
            "kind": "deployment",
            "namespace": NS,
            "name": "odoo-cron",
            "outcome": "stuck",
            "polls": 4,
        },
    )
    assert answer.status_code == 200
    assert k8s.controller.mode_for("deployment", NS, "odoo-cron") == RolloutMode.stuck(
        after_polls=4
    )
    refused = await api.post("/_double/modes", json={"kind": "statefulset", "namespace": NS})
    assert refused.status_code == 400


async def test_held_patch_is_applied_but_answered_only_when_released(api):
    armed = await api.post("/_double/holds", json={"namespace": NS, "name": "odoo-web"})
    assert armed.status_code == 200
    generation = (await api.get(WEB)).json()["metadata"]["generation"]
    patch = {"spec": {"replicas": 3}}
    answer = asyncio.ensure_future(api.patch(WEB, json=patch, headers=SMP))
    for _ in range(200):
        holds = (await api.get("/_double/holds")).json()["holds"]
        if holds and holds[0]["waiting"]:
            break
        await asyncio.sleep(0.05)
    assert holds == [
        {
            "resource": "deployments",
            "namespace": NS,
            "name": "odoo-web",
            "verb": "PATCH",
            "waiting": True,
        }
    ]
    assert not answer.done()
    applied = (await api.get(WEB)).json()  # the change is there before its answer
    assert applied["spec"]["replicas"] == 3
    assert applied["metadata"]["generation"] == generation + 1

    released = await api.delete("/_double/holds")

    assert released.json() == {"released": 1}
    assert (await answer).status_code == 200
    again = await api.patch(WEB, json={"spec": {"replicas": 4}}, headers=SMP)  # used up
    assert again.status_code == 200
    assert (await api.get("/_double/holds")).json() == {"holds": []}
    bad = await api.post("/_double/holds", json={"namespace": NS, "name": "x", "verb": "GET"})
    assert bad.status_code == 400


async def test_official_client_works_through_a_written_kubeconfig(k8s, tmp_path):
    kubeconfig = k8s.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        listed = await asyncio.to_thread(
            client.AppsV1Api(api_client).list_namespaced_deployment,
            NS,
            label_selector="finrelease/role=cron",
        )
    finally:
        api_client.close()
    assert [d.metadata.name for d in listed.items] == ["odoo-cron"]
    assert listed.items[0].metadata.annotations["deployment.kubernetes.io/revision"] == "1"


async def test_module_entry_point_serves_and_says_it_is_simulated(tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack.k8s",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert "SIMULATED" in banner
        url = banner.split(" at ")[1].split(";")[0]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/api/v1/namespaces")).json()["kind"] == "NamespaceList"
        assert url in kubeconfig.read_text()
    finally:
        process.terminate()
        await process.wait()


async def test_deleting_a_job_in_background_also_deletes_its_pods(api):
    job = {
        "metadata": {"name": "cleanup"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "a:1"}]}
            }
        },
    }
    await api.post(f"/apis/batch/v1/namespaces/{NS}/jobs", json=job)
    pods = f"/api/v1/namespaces/{NS}/pods"
    assert (
        len((await api.get(pods, params={"labelSelector": "job-name=cleanup"})).json()["items"])
        == 1
    )
    deleted = await api.delete(
        f"/apis/batch/v1/namespaces/{NS}/jobs/cleanup", params={"propagationPolicy": "Background"}
    )
    assert deleted.json()["status"] == "Success"
    assert deleted.json()["details"]["kind"] == "jobs"
    assert (await api.get(pods, params={"labelSelector": "job-name=cleanup"})).json()["items"] == []
    assert (await api.get(f"/apis/batch/v1/namespaces/{NS}/jobs/cleanup")).status_code == 404
