"""The `finrelease` command (governance checks only until the lead's CLI lands)."""

from __future__ import annotations

import typer

from starter.governance_cli import calendar_app, evidence_app, spec_app

app = typer.Typer(no_args_is_help=True)
app.add_typer(spec_app, name="spec")
app.add_typer(calendar_app, name="calendar")
app.add_typer(evidence_app, name="evidence")


def main() -> None:
    app()
