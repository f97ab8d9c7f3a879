"""`./dev up` -> `./dev status` healthy -> `./dev down` leaves no process behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from devstack.paths import PROJECT_ROOT
from devstack.ports import free_port

pytestmark = pytest.mark.e2e


def _dev(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT_ROOT / "dev"), *args], env=env, capture_output=True, text=True, timeout=240
    )


def _stack_env(home: Path) -> dict[str, str]:
    """The stack's state under `home`, every service on a free port."""
    env = {**os.environ, "FINRELEASE_HOME": str(home)}
    for name in (
        "TEMPORAL",
        "UI",
        "AZURITE",
        "KUBERNETES",
        "DEVOPS",
        "MONITOR",
        "WEBHOOKS",
        "ODOO",
    ):
        env[f"FINRELEASE_{name}_PORT"] = str(free_port())
    return env


def test_up_status_down_on_alternative_ports_leaves_nothing_running(tmp_path: Path):
    env = _stack_env(tmp_path)
    try:
        up = _dev(["up"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        pids = json.loads((tmp_path / "stack.json").read_text())["pids"]
        assert set(pids) == {"temporal", "azurite", "kubernetes", "doubles"}
        status = _dev(["status"], env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(" yes") == 4
        assert "SIMULATED" in status.stdout
        again = _dev(["up"], env)  # idempotent: nothing new started
        assert json.loads((tmp_path / "stack.json").read_text())["pids"] == pids, again.stdout
    finally:
        down = _dev(["down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    alive = [
        pid
        for pid in pids.values()
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
    after = _dev(["status"], env)
    assert after.returncode == 1 and " yes" not in after.stdout


def test_a_failed_up_stops_what_it_had_started(tmp_path: Path):
    env = _stack_env(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", int(env["FINRELEASE_DEVOPS_PORT"])))
        taken.listen()  # the doubles (started last) cannot bind their port
        up = _dev(["up"], env)
    assert up.returncode != 0
    assert "doubles" in up.stderr
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
