"""`python -m devstack.k8s --port 8443 --kubeconfig .finrelease/kubeconfig`: serve the double."""

from __future__ import annotations

import argparse
import asyncio
import json

from devstack.k8s.server import KubernetesDouble


async def serve(port: int, kubeconfig: str | None, seeds: list[str]) -> None:
    async with KubernetesDouble(port=port) as k8s:
        if kubeconfig:
            k8s.write_kubeconfig(kubeconfig)
        for seed in seeds:
            spec = json.loads(seed)
            k8s.seed_tenant(spec["namespace"], spec["deployments"], spec["image"])
        print(
            f"SIMULATED Kubernetes API (finrelease double, not a real cluster) at {k8s.url}"
            + (f"; kubeconfig {kubeconfig}" if kubeconfig else ""),
            flush=True,
        )
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the SIMULATED Kubernetes API double.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the double to this path")
    parser.add_argument(
        "--seed",
        action="append",
        default=[],
        help='a tenant to create: {"namespace": ..., "deployments": {"web": ...}, "image": ...}',
    )
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.kubeconfig, args.seed))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
