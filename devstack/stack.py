"""`./dev up | down | status`: the embedded stack on one machine, no Docker, no cloud account.

`up` records what it started in `.finrelease/stack.json`; `down` stops exactly that;
`env` prints the environment the workers and the CLI need to reach the stack.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from devstack.paths import state_dir
from devstack.process import ManagedProcess
from devstack.services import azurite, ensure_postgres, temporal_dev_server

STACK_FILE = "stack.json"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _processes(root: Path) -> list[ManagedProcess]:
    return [
        temporal_dev_server(root, _port("FINRELEASE_TEMPORAL_PORT", 7233), _port("FINRELEASE_UI_PORT", 8233)),
        azurite(root, _port("FINRELEASE_AZURITE_PORT", 10000)),
    ]


def up(root: Path | None = None) -> dict[str, str]:
    """Start every service (idempotent) and return the environment to reach them."""
    root = root or state_dir()
    started: dict[str, int] = {}
    for process in _processes(root):
        started[process.name] = process.start()
        print(f"  {process.name:<10} {process.address}", flush=True)
    postgres = ensure_postgres(root, _port("FINRELEASE_PG_PORT", 5432))
    print(f"  {'postgres':<10} {_redact(postgres.dsn)} ({postgres.origin})", flush=True)
    environment = stack_environment(root, postgres.dsn)
    (root / STACK_FILE).write_text(
        json.dumps({"pids": started, "postgres_origin": postgres.origin, "env": environment}, indent=2)
    )
    return environment


def stack_environment(root: Path, pg_dsn: str) -> dict[str, str]:
    from activities.azure_storage import azurite_connection_string

    temporal_port = _port("FINRELEASE_TEMPORAL_PORT", 7233)
    return {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "TEMPORAL_NAMESPACE": "default",
        "FINRELEASE_UI_URL": f"http://127.0.0.1:{_port('FINRELEASE_UI_PORT', 8233)}",
        "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(_port("FINRELEASE_AZURITE_PORT", 10000)),
        "FINRELEASE_PG_DSN": pg_dsn,
        "FINRELEASE_HOME": str(root),
    }


def down(root: Path | None = None) -> list[str]:
    """Stop exactly what `up` started; return the names stopped."""
    root = root or state_dir()
    stopped = [p.name for p in _processes(root) if p.stop()]
    (root / STACK_FILE).unlink(missing_ok=True)
    return stopped


def status(root: Path | None = None) -> list[tuple[str, str, str, bool]]:
    """(service, address, pid, healthy) for each service."""
    root = root or state_dir()
    rows = []
    for process in _processes(root):
        pid = process.pid()
        rows.append((process.name, process.address, str(pid or "-"), pid is not None and process.ready()))
    return rows


def _redact(dsn: str) -> str:
    if "@" in dsn and ":" in dsn.split("@")[0].split("//")[-1]:
        scheme, rest = dsn.split("//", 1)
        user = rest.split(":", 1)[0]
        return f"{scheme}//{user}:***@{rest.split('@', 1)[1]}"
    return dsn


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    command = args[0] if args else "status"
    if command == "up":
        print("finrelease embedded stack:", flush=True)
        up()
        print(f"state in {state_dir()}; `./dev down` stops it")
        return 0
    if command == "down":
        stopped = down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if command == "status":
        rows = status()
        print(f"{'service':<10} {'address':<52} {'pid':>7}  healthy")
        for name, address, pid, healthy in rows:
            print(f"{name:<10} {address:<52} {pid:>7}  {'yes' if healthy else 'no'}")
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
