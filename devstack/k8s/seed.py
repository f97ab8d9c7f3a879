"""A tenant as it runs before a release: three Odoo Deployments already rolled out."""

from __future__ import annotations

from typing import Any

from devstack.k8s.controller import RolloutController
from devstack.k8s.store import DEPLOYMENTS, NAMESPACES, ObjectStore

SIDECAR = "log-shipper"
SIDECAR_IMAGE = "cr.fluentbit.io/fluent/fluent-bit:3.1.9"
REPLICAS = {"web": 2, "worker": 1, "cron": 1}


def seed_tenant(
    store: ObjectStore,
    controller: RolloutController,
    namespace: str,
    deployments: dict[str, str],
    image: str,
) -> list[str]:
    """Create `namespace` (if missing) and one Deployment per role (`web`, `worker`, `cron`),
    each with an `odoo` container on `image` plus a log-shipper sidecar, env and volumes, and
    report them fully rolled out at revision 1. Returns the Deployment names."""
    if not store.exists(NAMESPACES, "", namespace):
        store.create(NAMESPACES, "", {"metadata": {"name": namespace}})
    for role, name in deployments.items():
        store.create(DEPLOYMENTS, namespace, tenant_deployment(name, role, image))
        controller.finish_rollout(namespace, name)
    return list(deployments.values())


def tenant_deployment(name: str, role: str, image: str) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "odoo",
        "app.kubernetes.io/instance": name,
        "finrelease/role": role,
    }
    odoo = {
        "name": "odoo",
        "image": image,
        "args": ["--workers=2"]
        if role == "web"
        else ["--max-cron-threads=1" if role == "cron" else "--workers=0"],
        "env": [
            {"name": "ODOO_ROLE", "value": role},
            {
                "name": "PGHOST",
                "valueFrom": {"configMapKeyRef": {"name": "odoo-db", "key": "host"}},
            },
            {
                "name": "PGPASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "odoo-db", "key": "password"}},
            },
        ],
        "ports": [{"containerPort": 8069, "name": "http", "protocol": "TCP"}],
        "volumeMounts": [
            {"name": "filestore", "mountPath": "/var/lib/odoo"},
            {"name": "config", "mountPath": "/etc/odoo"},
        ],
    }
    sidecar = {
        "name": SIDECAR,
        "image": SIDECAR_IMAGE,
        "volumeMounts": [{"name": "filestore", "mountPath": "/var/lib/odoo", "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": REPLICAS.get(role, 1),
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [odoo, sidecar],
                    "volumes": [
                        {
                            "name": "filestore",
                            "persistentVolumeClaim": {"claimName": f"{name}-filestore"},
                        },
                        {"name": "config", "configMap": {"name": "odoo-config"}},
                    ],
                },
            },
        },
    }
