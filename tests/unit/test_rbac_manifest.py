"""The k8s worker's RBAC manifest grants exactly what the Kubernetes activities call."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "k8s" / "rbac.yaml"
ACTIVITIES = ROOT / "activities" / "kubernetes.py"
VERBS = {"read": "get", "list": "list", "patch": "patch", "create": "create", "delete": "delete"}
GROUPS = {"apps": "apps", "batch": "batch", "core": ""}


def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def granted() -> set[tuple[str, str, str]]:
    rules = documents()["ClusterRole"]["rules"]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_manifest_parses_into_service_account_cluster_role_and_role_binding():
    assert set(documents()) == {"ServiceAccount", "ClusterRole", "RoleBinding"}


def test_role_is_bound_per_namespace_to_the_worker_service_account_only():
    docs = documents()
    binding, account = docs["RoleBinding"], docs["ServiceAccount"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": docs["ClusterRole"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert binding["metadata"]["namespace"] != account["metadata"]["namespace"]


def test_role_grants_exactly_the_least_privilege_set():
    assert granted() == {
        ("apps", "deployments", "get"),
        ("apps", "deployments", "list"),
        ("apps", "deployments", "patch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "delete"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
    }
    assert not any("*" in entry for entry in granted())


def test_every_api_call_of_the_activities_is_granted():
    calls = set(
        re.findall(
            r"self\._(apps|batch|core)\.(read|list|patch|create|delete)_namespaced_(\w+)",
            ACTIVITIES.read_text(),
        )
    )
    assert calls, "no client calls found: has the activities module changed its style?"
    for api, verb, kind in calls:
        resource = "pods/log" if kind == "pod_log" else f"{kind}s"
        assert (GROUPS[api], resource, VERBS[verb]) in granted(), (
            f"{verb} {resource} is not granted"
        )
