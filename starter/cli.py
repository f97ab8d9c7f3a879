"""The `finrelease` command: governance checks, release verbs, evidence, workers."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from starter import release_cli, trust_cli
from starter.evidence_cli import evidence_app
from starter.governance_cli import calendar_app, spec_app
from starter.ledger_cli import ledger_app

app = typer.Typer(no_args_is_help=True)
app.add_typer(spec_app, name="spec")
app.add_typer(calendar_app, name="calendar")
app.add_typer(evidence_app, name="evidence")
app.add_typer(ledger_app, name="ledger")
release_cli.register(app)
trust_cli.register(app)


@app.command("worker")
def worker(
    name: Annotated[str, typer.Argument(help="workflows | db | k8s | azure | smoke | all")],
) -> None:
    """Run one task queue's worker until SIGTERM/SIGINT (exit 2 when its config is missing)."""
    from workers.main import run_worker

    raise typer.Exit(run_worker(name))


def main() -> None:
    """Run the CLI and leave without interpreter finalisation.

    The Temporal client's core runtime runs Rust threads that may still call into Python
    while the interpreter finalises, which aborts the process (PyGILState_Release) and
    loses the exit code. Everything the CLI does is finished and flushed by then.
    """
    code: int = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
