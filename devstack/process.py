"""Start, probe and stop the stack's background processes (pid and log files under a state dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ManagedProcess:
    """One background service: its command, where it logs, and how to tell it is ready."""

    name: str
    command: Sequence[str]
    state_dir: Path
    ready: Callable[[], bool]
    address: str
    env: dict[str, str] | None = None
    user: str | None = None  # run as this OS user (PostgreSQL refuses to run as root)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid we started, if that process still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def start(self, timeout: float = 60.0) -> int:
        """Start (unless already running) and wait until ready; raise with the log tail if not."""
        running = self.pid()
        if running is not None and self.ready():
            return running
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        process = subprocess.Popen(
            list(self.command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
            user=self.user,
            group=self.user,
            cwd=self.state_dir if self.user else None,  # a home the user can read
            start_new_session=True,  # so `down` stops the whole process group, and ^C here does not
        )
        log.close()
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {process.returncode} at start; log {self.log_file}:\n"
                    + self.log_tail()
                )
            if self.ready():
                return process.pid
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(
            f"{self.name} not ready on {self.address} within {timeout:.0f}s; log {self.log_file}:\n"
            + self.log_tail()
        )

    def stop(self, grace: float = 10.0) -> bool:
        """Stop the process group we started; True when something was stopped."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.1)
        _signal_group(pid, signal.SIGKILL)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
