"""`finrelease evidence show|verify`: a release's evidence from Blob Storage, or a local file.

`verify` takes a FILE (hash chain only, as before) or a RELEASE_ID: then the published
bundle, its tenant bundles and every backup it names are downloaded and re-hashed
(`activities.evidence.verify_published_evidence`). Blob Storage comes from
`AZURE_STORAGE_CONNECTION_STRING` or `AZURE_STORAGE_ACCOUNT_URL` (read access suffices).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from starter.client_helpers import FAILED, INVALID, CliError, run_async
from starter.governance_cli import _out, verify_evidence
from starter.safe_text import cell, printable

evidence_app = typer.Typer(no_args_is_help=True, help="Show and verify evidence bundles.")


def _is_file_argument(target: str) -> bool:
    # release ids match [A-Za-z0-9._-]{3,64}: a path separator or .json means a file
    return Path(target).is_file() or "/" in target or target.endswith(".json")


async def _blob_service() -> Any:
    from activities.azure_storage import blob_service_from_environment

    try:
        return blob_service_from_environment()
    except RuntimeError as error:
        raise CliError(str(error), INVALID) from None


async def _download_bundle(release_id: str) -> dict[str, Any]:
    from azure.core.exceptions import ResourceNotFoundError

    from activities.azure_storage import EVIDENCE_CONTAINER
    from activities.evidence import evidence_blob_name

    name = evidence_blob_name(release_id)
    async with await _blob_service() as service:
        blob = service.get_blob_client(EVIDENCE_CONTAINER, name)
        try:
            content = await (await blob.download_blob()).readall()
        except ResourceNotFoundError:
            raise CliError(
                f"no evidence published for {release_id} ({EVIDENCE_CONTAINER}/{name})"
            ) from None
    return json.loads(content)


@evidence_app.command("show")
def show(
    release_id: Annotated[str, typer.Argument(help="release id")],
    json_output: Annotated[bool, typer.Option("--json", help="the raw bundle")] = False,
) -> None:
    """Print a release's published evidence, one line per entry."""
    from rich.table import Table

    try:
        bundle = run_async(_download_bundle(release_id))
    except CliError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(error.code) from None
    if json_output:
        typer.echo(json.dumps(bundle, indent=2, ensure_ascii=False))
        return
    table = Table(show_header=True, header_style="bold", title=cell(f"evidence of {release_id}"))
    for column in ("seq", "at", "kind", "actor", "data"):
        table.add_column(column, overflow="fold")
    for entry in bundle.get("entries", []):
        data = json.dumps(entry.get("data", {}), ensure_ascii=False, sort_keys=True)
        table.add_row(
            cell(entry.get("seq")),
            cell(entry.get("at")),
            cell(entry.get("kind"), limit=64),
            cell(entry.get("actor"), limit=254),
            cell(data, limit=160),
        )
    _out.print(table)
    typer.echo(printable(f"head {bundle.get('head')}"))


@evidence_app.command("verify")
def verify(
    target: Annotated[str, typer.Argument(help="evidence bundle FILE or RELEASE_ID")],
) -> None:
    """FILE: recompute its hash chain. RELEASE_ID: verify what was published, backups too."""
    if _is_file_argument(target):
        verify_evidence(Path(target))
        return

    async def go() -> Any:
        from activities.evidence import verify_published_evidence

        async with await _blob_service() as service:
            return await verify_published_evidence(service, target)

    try:
        report = run_async(go())
    except CliError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(error.code) from None
    for problem in report.problems:
        typer.echo(printable(f"problem: {problem}"), err=True)
    if not report.ok:
        raise typer.Exit(FAILED)
    typer.echo(
        f"ok: {report.entries} entries in {len(report.bundles)} bundle(s), "
        f"{report.statements} signed statement(s) re-verified, "
        f"{len(report.backups)} backup(s) re-hashed"
    )


def _bundle_of(target: str) -> dict[str, Any]:
    try:
        if _is_file_argument(target):
            return json.loads(Path(target).read_text(encoding="utf-8"))
        return run_async(_download_bundle(target))
    except CliError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(error.code) from None
    except (OSError, ValueError) as exc:
        typer.echo(printable(f"{target}: cannot read the bundle: {exc}"), err=True)
        raise typer.Exit(INVALID) from None


@evidence_app.command("allowed-signers")
def export_allowed_signers(
    target: Annotated[str, typer.Argument(help="evidence bundle FILE or RELEASE_ID")],
) -> None:
    """The members' keys the release ran under, as an allowed_signers file for ssh-keygen."""
    from governance.evidence_audit import allowed_signers_of

    typer.echo(allowed_signers_of(_bundle_of(target)), nl=False)


@evidence_app.command("export-statements")
def export_statements(
    target: Annotated[str, typer.Argument(help="evidence bundle FILE or RELEASE_ID")],
    out: Annotated[Path, typer.Option(help="directory: one STATEMENT file and STATEMENT.sig each")],
) -> None:
    """Write every signed statement and its signature, to check with `ssh-keygen -Y verify
    -f allowed_signers -I SIGNER -n finrelease -s FILE.sig < FILE`."""
    from governance.evidence_audit import exported_statements

    out.mkdir(parents=True, exist_ok=True)
    for stem, statement, signature in exported_statements(_bundle_of(target)):
        (out / f"{stem}.json").write_text(statement, encoding="utf-8")
        (out / f"{stem}.json.sig").write_text(signature, encoding="ascii")
        typer.echo(printable(f"{out / stem}.json"))
