"""A SIMULATED Kubernetes API server for tests and the demo (no real cluster runs here).

`KubernetesDouble` serves apps/v1 Deployments, batch/v1 Jobs, core/v1 Namespaces, Pods and
pod logs with the API semantics finrelease depends on, and a rollout controller whose outcome
tests choose per object (`RolloutMode`).
"""

from devstack.k8s.controller import RolloutMode
from devstack.k8s.server import KubernetesDouble, write_kubeconfig

__all__ = ["KubernetesDouble", "RolloutMode", "write_kubeconfig"]
