"""`./dev up | down | status | env`: the embedded stack on one machine, no Docker, no cloud account.

Services: Temporal dev server (+ UI), Azurite, PostgreSQL, the SIMULATED Kubernetes API, and
the HTTP doubles of Azure DevOps, Azure Monitor, webhooks and Odoo JSON-RPC. Every port can
be moved with an environment variable (see `StackPorts`). `up` records what it started in
`<state>/stack.json`; `down` stops exactly that; `env` prints what workers and the CLI need.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from devstack.paths import PROJECT_ROOT, state_dir
from devstack.process import ManagedProcess
from devstack.services import (
    DoublePorts,
    azurite,
    ensure_postgres,
    http_doubles,
    kubernetes_double,
    temporal_dev_server,
)

STACK_FILE = "stack.json"
DEMO_INVENTORY = PROJECT_ROOT / "examples" / "tenants.yaml"
DEMO_WORK_ITEM = 4711


@dataclass(frozen=True)
class StackPorts:
    temporal: int = 7233
    ui: int = 8233
    azurite: int = 10000
    postgres: int = 5432
    kubernetes: int = 16443
    devops: int = 18701
    monitor: int = 18702
    webhooks: int = 18703
    odoo: int = 18069

    @classmethod
    def from_environment(cls) -> StackPorts:
        """`FINRELEASE_<NAME>_PORT` overrides each default (e.g. FINRELEASE_UI_PORT)."""
        values = {
            name: int(os.environ.get(f"FINRELEASE_{name.upper()}_PORT", default))
            for name, default in asdict(cls()).items()
        }
        return cls(**values)

    @property
    def doubles(self) -> DoublePorts:
        return DoublePorts(self.devops, self.monitor, self.webhooks, self.odoo)


def demo_tenant_databases() -> dict[str, str]:
    """Tenant name -> database name of the demo inventory (what the Odoo double answers for)."""
    from governance.inventory import parse_inventory

    inventory = parse_inventory(DEMO_INVENTORY.read_text())
    return {tenant.name: tenant.database for tenant in inventory.tenants}


def _processes(root: Path, ports: StackPorts, pg_dsn: str = "") -> list[ManagedProcess]:
    odoo_tenants = (
        {
            name: psycopg.conninfo.make_conninfo(pg_dsn, dbname=database)
            for name, database in demo_tenant_databases().items()
        }
        if pg_dsn
        else {}
    )
    return [
        temporal_dev_server(root, ports.temporal, ports.ui),
        azurite(root, ports.azurite),
        kubernetes_double(root, ports.kubernetes),
        http_doubles(root, ports.doubles, odoo_tenants, [DEMO_WORK_ITEM]),
    ]


def up(root: Path | None = None, ports: StackPorts | None = None) -> dict[str, str]:
    """Start every service (idempotent) and return the environment to reach them."""
    root = root or state_dir()
    ports = ports or StackPorts.from_environment()
    postgres = ensure_postgres(root, ports.postgres)
    started: dict[str, int] = {}
    processes = _processes(root, ports, postgres.dsn)
    try:
        for process in processes:
            started[process.name] = process.start()
            print(f"  {process.name:<11} {process.address}", flush=True)
    except BaseException:
        # a half-started stack is worse than none: stop what this call started
        for process in processes:
            if process.name in started:
                process.stop()
        raise
    print(f"  {'postgres':<11} {_redact(postgres.dsn)} ({postgres.origin})", flush=True)
    environment = stack_environment(root, ports, postgres.dsn)
    (root / STACK_FILE).write_text(
        json.dumps(
            {
                "pids": started,
                "postgres_origin": postgres.origin,
                "ports": asdict(ports),
                "env": environment,
            },
            indent=2,
        )
    )
    return environment


def stack_environment(root: Path, ports: StackPorts, pg_dsn: str) -> dict[str, str]:
    """What the workers and the CLI need to reach this stack (local, demo-only credentials)."""
    from activities.azure_storage import azurite_connection_string
    from devstack.signing import demo_trust_root

    return {
        "FINRELEASE_TRUST_ROOT": str(demo_trust_root(root)),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal}",
        "TEMPORAL_NAMESPACE": "default",
        "FINRELEASE_UI_URL": f"http://127.0.0.1:{ports.ui}",
        "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(ports.azurite),
        "FINRELEASE_PG_DSN": pg_dsn,
        "FINRELEASE_PG_MAIN_DSN": pg_dsn,
        "FINRELEASE_KUBECONFIG": str(root / "kubeconfig"),
        "AZURE_DEVOPS_ORG_URL": f"http://127.0.0.1:{ports.devops}/contoso",
        "AZURE_DEVOPS_PROJECT": "Finance",
        "AZURE_DEVOPS_PAT": os.environ.get("AZURE_DEVOPS_PAT", "demo-pat"),
        "FINRELEASE_TEAMS_WEBHOOKS": f"http://127.0.0.1:{ports.webhooks}/hooks/teams",
        "FINRELEASE_SLACK_WEBHOOKS": f"http://127.0.0.1:{ports.webhooks}/hooks/slack",
        "FINRELEASE_SYNTHETIC_CHECKS": f"odoo=http://127.0.0.1:{ports.odoo}/{{tenant}}/web/health",
        "FINRELEASE_HOME": str(root),
    }


def down(root: Path | None = None) -> list[str]:
    """Stop exactly what `up` started (never a PostgreSQL we did not start); return names."""
    root = root or state_dir()
    ports = _recorded_ports(root)
    stopped = [p.name for p in _processes(root, ports) if p.stop()]
    stopped += [w.name for w in _worker_processes(root) if w.stop()]  # left by `./dev demo --keep`
    (root / STACK_FILE).unlink(missing_ok=True)
    return stopped


def status(root: Path | None = None) -> list[tuple[str, str, str, bool]]:
    """(service, address, pid, healthy) for each service."""
    root = root or state_dir()
    rows = []
    for process in _processes(root, _recorded_ports(root)):
        pid = process.pid()
        rows.append(
            (process.name, process.address, str(pid or "-"), pid is not None and process.ready())
        )
    return rows


def _worker_processes(root: Path) -> list[ManagedProcess]:
    from devstack.fleet import QUEUES, worker_process

    return [worker_process(queue, root, {}) for queue in QUEUES]


def _recorded_ports(root: Path) -> StackPorts:
    try:
        return StackPorts(**json.loads((root / STACK_FILE).read_text())["ports"])
    except (FileNotFoundError, KeyError, ValueError):
        return StackPorts.from_environment()


def _redact(dsn: str) -> str:
    """A DSN for display: the password, if any, replaced."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    if params.get("password"):
        params["password"] = "***"
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    command = args[0] if args else "status"
    if command == "up":
        print(
            "finrelease embedded stack (Kubernetes, Azure DevOps, Monitor and Odoo are SIMULATED):",
            flush=True,
        )
        up()
        print(f"state in {state_dir()}; `./dev env` prints the environment; `./dev down` stops it")
        return 0
    if command == "down":
        stopped = down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if command == "status":
        rows = status()
        print(f"{'service':<11} {'address':<60} {'pid':>7}  healthy")
        for name, address, pid, healthy in rows:
            print(f"{name:<11} {address:<60} {pid:>7}  {'yes' if healthy else 'no'}")
        return 0 if all(row[3] for row in rows) else 1
    if command == "env":
        stack = json.loads((state_dir() / STACK_FILE).read_text())
        for key, value in stack["env"].items():
            print(f"export {key}='{value}'")
        return 0
    print(f"unknown command {command!r}: use up | down | status | env", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
