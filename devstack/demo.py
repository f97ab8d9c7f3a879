"""`./dev demo [--keep]`: a real release over three demo tenants on the embedded stack.

Everything is real except what cannot run here (labelled SIMULATED): Temporal dev server and
UI, PostgreSQL with Odoo-shaped databases, Azurite, one worker process per task queue, the
finrelease CLI. Kubernetes, Azure DevOps, Azure Monitor and Odoo's JSON-RPC are HTTP doubles.
The demo tenants use the always-open `demo` calendar, so the release does not wait for a
real month-end close (the real calendars are in examples/calendars).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from devstack import stack
from devstack.demo_tenants import prepare_tenants, write_demo_files
from devstack.fleet import start_fleet, stop_fleet
from devstack.paths import state_dir

FINRELEASE = str(Path(sys.executable).parent / "finrelease")
TERMINAL = {
    "Completed",
    "RolledBack",
    "PartiallyRolledBack",
    "Failed",
    "Rejected",
    "Expired",
    "Invalid",
    "Aborted",
}


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def cli(
    args: list[str], env: dict[str, str], expect: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run the finrelease CLI as a user would, echoing the command and its output."""
    print(f"$ finrelease {' '.join(args)}", flush=True)
    result = subprocess.run(
        [FINRELEASE, *args], env=env, capture_output=True, text=True, timeout=120
    )
    output = (result.stdout + result.stderr).strip()
    if output:
        print("  " + output.replace("\n", "\n  "), flush=True)
    if expect is not None and result.returncode != expect:
        raise SystemExit(
            f"demo: `finrelease {args[0]}` exited {result.returncode}, expected {expect}"
        )
    return result


def follow(release_id: str, env: dict[str, str], timeout: float = 240) -> dict:
    """Print each change of phase and tenant state until the release has an outcome."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [FINRELEASE, "status", release_id, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode == 0:
            status = json.loads(result.stdout)
            tenants = ", ".join(
                f"{t['tenant']}={t['state']}" for w in status.get("waves", []) for t in w["tenants"]
            )
            line = f"{status['phase']:<16} {tenants}"
            if line != seen:
                print(f"  {datetime.now(UTC):%H:%M:%S}  {line}", flush=True)
                seen = line
            if status.get("outcome") in TERMINAL:
                return status
        time.sleep(1)
    raise SystemExit(f"demo: release {release_id} had no outcome within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack and workers running")
    parser.add_argument("--entries", type=int, default=3000, help="journal entries per tenant")
    args = parser.parse_args(argv)
    started = time.monotonic()
    root = state_dir()
    ports = stack.StackPorts.from_environment()

    say("Starting the embedded stack (Kubernetes, Azure DevOps, Monitor and Odoo are SIMULATED)")
    stack_env = stack.up(root, ports)
    env = {**os.environ, **stack_env}
    release_id = f"FIN-DEMO-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    files = write_demo_files(root / "demo" / release_id, release_id, ports.odoo, root=root)
    inventory_names = ["berlin", "newyork", "tokyo"]
    for name in inventory_names:
        env[f"FINRELEASE_SMOKE_{name.upper()}_USER"] = "smoke"
        env[f"FINRELEASE_SMOKE_{name.upper()}_PASSWORD"] = env.get(
            "FINRELEASE_DOUBLES_SMOKE_PASSWORD", "smoke"
        )

    say(
        f"Seeding three Odoo-shaped tenants ({args.entries} journal entries each) and their deployments"
    )
    prepare_tenants(files, env, f"http://127.0.0.1:{ports.kubernetes}", args.entries)

    say("Starting one worker process per task queue")
    workers = start_fleet(root, env)
    for worker in workers:
        print(f"  {worker.name:<18} pid {worker.pid()}  log {worker.log_file}")
    try:
        say(
            f"Starting release {release_id} (risk medium: platform + finance approvals), "
            "signed by the requester, under a governance bundle two administrators signed"
        )
        cli(files.start_arguments(), env)

        say("An approver checks what the release digest covers before signing it")
        cli(["governance", "digest", str(files.spec), "--bundle", str(files.bundle)], env)

        say("The requester signs an approval of their own release: refused (segregation of duties)")
        cli(files.approve_arguments(release_id, "alice@example.com", "platform"), env, expect=3)

        say("Two different approvers sign the digest they reviewed, each with their own key")
        cli(
            files.approve_arguments(
                release_id, "bob@example.com", "platform", "--comment", "reviewed the migration"
            ),
            env,
        )
        cli(
            files.approve_arguments(
                release_id,
                "carol@example.com",
                "finance",
                "--comment",
                "no impact on the trial balance",
            ),
            env,
        )

        say("Following the release")
        status = follow(release_id, env)

        say("Verifying the evidence bundle the way an auditor would")
        verified = cli(["evidence", "verify", release_id], env, expect=None)

        say("Summary")
        ui = env["FINRELEASE_UI_URL"]
        print(f"  release      {release_id}: {status['outcome']}")
        print(
            "  tenants      "
            + ", ".join(
                f"{t['tenant']}={t['state']}" for w in status["waves"] for t in w["tenants"]
            )
        )
        print(
            f"  evidence     evidence/{release_id}.json in Azurite ({'verified' if verified.returncode == 0 else 'NOT verified'})"
        )
        print(f"  Temporal UI  {ui}/namespaces/default/workflows/release-{release_id}")
        print(f"  worker logs  {root}/worker-*.log")
        print(f"  took         {time.monotonic() - started:.0f}s")
        if args.keep:
            print("\n  --keep: the stack and the workers keep running; `./dev down` stops them all")
        return 0 if status["outcome"] == "Completed" and verified.returncode == 0 else 1
    finally:
        if not args.keep:
            stop_fleet(workers)
            stack.down(root)


if __name__ == "__main__":
    raise SystemExit(main())
