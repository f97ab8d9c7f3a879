"""The `finrelease-db` activities: backups, verified restores, rehearsals and migrations.

Each tenant database lives on a server named by an alias; the worker resolves the alias to
a DSN (`FINRELEASE_PG_<ALIAS>_DSN`), which never appears in inputs, results or logs.
Dumps stream from `pg_dump -Fc` straight into a block blob: memory stays bounded by block
size x concurrency, the sha256 and size are computed on the way, and a failed or killed
`pg_dump` never commits the blob. Scratch databases (verify, rehearsal) carry the release
id and their creation time, so a retry or `sweep_scratch_databases` can drop leftovers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import structlog
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobClient, BlobServiceClient
from psycopg import sql
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import pg_cutover
from activities.azure_storage import BACKUP_CONTAINER
from activities.block_stream import PipeBlocks, StagedBlob, open_pipe, stage_stream, tail
from activities.finance_ledger import (
    apply_in_one_transaction,
    entries_jsonl,
    fetch_one,
    finance_snapshot_of,
    invariant_violations,
    pg_error,
    row_counts_and_max_move,
)
from activities.odoo_modules import check_module_names, installed_versions
from activities.pg_server import (
    PgServer,
    ScratchDatabase,
    checked_name,
    database_owner,
    drop_database,
    dsn_from_environment,
    existing_databases,
    non_retryable,
    rename_database,
    short_release_id,
    swap_databases,
    sweep_scratch_databases,
    tool_major,
)
from governance.inventory import Tenant
from workflows.contracts import (
    BackupRequest,
    BackupVerification,
    CutoverRequest,
    DatabaseBackup,
    DatabaseClosed,
    DatabaseReopened,
    DatabaseRestore,
    EntriesSinceBackup,
    ErrorType,
    FinanceSnapshot,
    MigrationRequest,
    MigrationResult,
    MigrationScript,
    ModuleCheck,
    ModuleCheckResult,
    RehearsalRequest,
    RehearsalResult,
    RestorePoint,
    TenantTask,
    WritesSinceReopen,
    WriteWatermark,
)

__all__ = ["PostgresActivities", "short_release_id", "sweep_scratch_databases"]

log = structlog.get_logger(__name__)

MiB = 1 << 20
# Metadata a committed dump must carry for a retry to reuse it.
BACKUP_METADATA = ("sha256", "bytes", "max_move_id", "taken_at", "database", "row_counts_sha256")

DsnSource = Callable[[str], str] | Mapping[str, str]


class PostgresActivities:
    """The db worker's activities, holding the alias -> DSN source and the blob client."""

    def __init__(
        self,
        dsn_for: DsnSource,
        blobs: BlobServiceClient,
        *,
        container: str = BACKUP_CONTAINER,
        scratch_prefix: str = "finrelease_scratch",
        block_size: int = 4 * MiB,
        concurrency: int = 4,
        pg_bin_dir: str = "",
    ) -> None:
        self._dsn_for = dsn_for
        self._blobs = blobs
        self._container = container
        self.scratch_prefix = scratch_prefix
        self._block_size = block_size
        self._concurrency = concurrency
        self._pg_bin_dir = pg_bin_dir

    @classmethod
    def from_environment(cls, blobs: BlobServiceClient | None = None) -> PostgresActivities:
        """DSNs from `FINRELEASE_PG_<ALIAS>_DSN`, client tools from `FINRELEASE_PG_BIN` or PATH."""
        from activities.azure_storage import blob_service_from_environment

        return cls(
            dsn_from_environment,
            blobs or blob_service_from_environment(),
            pg_bin_dir=os.environ.get("FINRELEASE_PG_BIN", ""),
        )

    async def sweep_scratch_databases(self, db_server: str, older_than: dt.timedelta) -> list[str]:
        """Drop this worker's scratch databases on `db_server` older than `older_than`."""
        server = self._server_of(db_server)
        return await sweep_scratch_databases(
            server.dsn("postgres"), self.scratch_prefix, older_than
        )

    # ------------------------------------------------------------ backup

    @activity.defn(name="backup_database")
    async def backup_database(self, task: TenantTask) -> DatabaseBackup:
        """`pg_dump -Fc` of the tenant database streamed into `<release>/<tenant>/<db>.dump`."""
        tenant = task.tenant
        logger = log.bind(release_id=task.release_id, tenant=tenant.name)
        blob = self._blob(f"{task.release_id}/{tenant.name}/{tenant.database}.dump")
        counts_blob = self._blob(f"{blob.blob_name}.rowcounts.json")
        existing = await _committed_backup(blob, counts_blob, tenant)
        if existing is not None:
            logger.info("backup already committed, reusing it", blob=blob.blob_name)
            return existing
        server = self._server(tenant)
        dump_major = await tool_major(self._tool("pg_dump"))
        async with await server.connect(tenant.database) as conn:
            server_major = conn.info.server_version // 10000
            if dump_major < server_major:
                raise non_retryable(
                    f"tenant {tenant.name}: pg_dump {dump_major} cannot dump server "
                    f"{server_major}; install client tools >= {server_major}",
                    ErrorType.TOOL_VERSION,
                )
            # pg_dump runs inside the snapshot this transaction exports, so the counts
            # read here are exactly what the dump contains.
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await conn.set_read_only(True)
            snapshot = await fetch_one(conn, "SELECT pg_export_snapshot()")
            compression = ["--compress=zstd:1"] if dump_major >= 16 else ["-Z1"]
            command = [self._tool("pg_dump"), "-Fc", *compression, "--no-password"]
            command.append(f"--snapshot={snapshot}")
            counting = asyncio.ensure_future(row_counts_and_max_move(conn))
            try:
                env = server.environment(tenant.database)
                written = await self._dump_into(blob, command, env, logger)
            finally:
                counts, max_move_id = await counting
            await conn.rollback()
        taken_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        counts_json = json.dumps(counts, sort_keys=True, separators=(",", ":")).encode()
        await counts_blob.upload_blob(counts_json, overwrite=True)
        metadata = {
            "sha256": written.sha256,
            "bytes": str(written.bytes),
            "max_move_id": str(max_move_id),
            "taken_at": taken_at,
            "database": tenant.database,
            "tenant": tenant.name,
            "release_id": task.release_id,
            "row_counts_sha256": hashlib.sha256(counts_json).hexdigest(),
        }
        await blob.commit_block_list(written.blocks, metadata=metadata)
        logger.info("backup committed", blob=blob.blob_name, bytes=written.bytes)
        return DatabaseBackup(
            tenant=tenant.name,
            database=tenant.database,
            url=blob.url,
            blob_name=blob.blob_name,
            bytes=written.bytes,
            sha256=written.sha256,
            row_counts=counts,
            max_move_id=max_move_id,
            taken_at=taken_at,
        )

    async def _dump_into(
        self, blob: BlobClient, command: list[str], env: dict[str, str], logger: Any
    ) -> StagedBlob:
        """Stage pg_dump's stdout as blocks; raise, committing nothing, if pg_dump fails."""
        read_end, write_end = open_pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=write_end, stderr=asyncio.subprocess.PIPE, env=env
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # pg_dump holds the only write end: its exit is our EOF
        assert process.stderr is not None
        stderr = asyncio.ensure_future(tail(process.stderr))
        chunks = PipeBlocks(read_end, self._block_size)
        try:
            staged = await stage_stream(blob, chunks, self._concurrency, heartbeat=True)
            code = await process.wait()
        finally:
            if process.returncode is None:  # cancelled or staging failed: stop pg_dump
                process.kill()
                await process.wait()
            await chunks.close()
            message = await stderr
        if code != 0:
            logger.warning("pg_dump failed, nothing committed", returncode=code)
            raise ApplicationError(f"pg_dump exited with {code}: {message}", type="DumpFailed")
        return staged

    # ------------------------------------------------------------ verify

    @activity.defn(name="verify_backup")
    async def verify_backup(self, request: BackupRequest) -> BackupVerification:
        """Restore the blob into a scratch database; compare tables and exact row counts."""
        tenant, backup = request.tenant, request.backup
        server = self._server(tenant)
        async with self._scratch(server, request.release_id, tenant.name, "v") as scratch:
            sha256 = await self._restore_blob(backup, server, scratch, keep_owner=False)
            if sha256 != backup.sha256:
                raise non_retryable(
                    f"tenant {tenant.name}: backup {backup.blob_name} has sha256 {sha256}, "
                    f"recorded {backup.sha256}",
                    ErrorType.BACKUP_VERIFICATION_FAILED,
                )
            async with await server.connect(scratch) as conn:
                restored, _ = await row_counts_and_max_move(conn)
        _compare_counts(tenant.name, backup.row_counts, restored)
        log.info("backup verified", release_id=request.release_id, tenant=tenant.name)
        return BackupVerification(
            tenant=tenant.name,
            verified=True,
            sha256=sha256,
            tables_compared=len(restored),
            rows_compared=sum(restored.values()),
        )

    # ------------------------------------------------------------ finance and migrations

    @activity.defn(name="finance_snapshot")
    async def finance_snapshot(self, task: TenantTask) -> FinanceSnapshot:
        """Trial balance and ledger invariants of the tenant database, now."""
        server = self._server(task.tenant)
        return await finance_snapshot_of(server.dsn(task.tenant.database), task.tenant.name)

    @activity.defn(name="check_modules")
    async def check_modules(self, check: ModuleCheck) -> ModuleCheckResult:
        """The release's modules are installed on the tenant (else InvalidRelease)."""
        check_module_names(check.tenant.name, check.modules)
        server = self._server(check.tenant)
        async with await server.connect(check.tenant.database) as conn:
            versions = await installed_versions(conn, check.tenant.name, check.modules)
        return ModuleCheckResult(tenant=check.tenant.name, versions=versions)

    @activity.defn(name="rehearse_migration")
    async def rehearse_migration(self, request: RehearsalRequest) -> RehearsalResult:
        """Restore the backup into a template, migrate a clone of it, compare invariants."""
        tenant = request.tenant
        _check_scripts(tenant.name, request.migrations)
        server = self._server(tenant)
        async with self._scratch(server, request.release_id, tenant.name, "tpl") as template:
            await self._restore_blob(request.backup, server, template, keep_owner=False)
            before = await finance_snapshot_of(server.dsn(template), tenant.name)
            clone_of_template = self._scratch(
                server, request.release_id, tenant.name, "try", template=template
            )
            async with clone_of_template as clone:
                violations: list[str] = []
                started = time.monotonic()
                try:
                    async with await server.connect(clone) as conn:
                        await apply_in_one_transaction(conn, request.release_id, request.migrations)
                except psycopg.Error as error:
                    violations.append(f"migration failed: {pg_error(error)}")
                duration = time.monotonic() - started
                after = await finance_snapshot_of(server.dsn(clone), tenant.name)
                if not violations:
                    violations = await invariant_violations(
                        server.dsn(template), server.dsn(clone), before, after
                    )
        log.info(
            "rehearsal done",
            release_id=request.release_id,
            tenant=tenant.name,
            passed=not violations,
            duration_seconds=round(duration, 3),
        )
        return RehearsalResult(
            tenant=tenant.name,
            passed=not violations,
            duration_seconds=duration,
            before=before,
            after=after,
            violations=violations,
        )

    @activity.defn(name="migrate_database")
    async def migrate_database(self, request: MigrationRequest) -> MigrationResult:
        """Apply the scripts not yet in the tenant's ledger, all in one transaction."""
        tenant = request.tenant
        _check_scripts(tenant.name, request.migrations)
        server = self._server(tenant)
        started = time.monotonic()
        try:
            async with await server.connect(tenant.database) as conn:
                applied, skipped = await apply_in_one_transaction(
                    conn, request.release_id, request.migrations
                )
        except psycopg.Error as error:
            raise non_retryable(
                f"tenant {tenant.name}: migration rolled back, database unchanged: "
                f"{pg_error(error)}",
                ErrorType.MIGRATION_FAILED,
            ) from None
        log.info(
            "migrated",
            release_id=request.release_id,
            tenant=tenant.name,
            applied=applied,
            skipped=skipped,
        )
        return MigrationResult(
            tenant=tenant.name,
            applied=applied,
            skipped=skipped,
            duration_seconds=time.monotonic() - started,
        )

    # ------------------------------------------------------------ going back

    @activity.defn(name="entries_since_backup")
    async def entries_since_backup(self, request: BackupRequest) -> EntriesSinceBackup:
        """Journal entries above the backup's highest id, exported as JSON lines."""
        tenant, after_id = request.tenant, request.backup.max_move_id
        server = self._server(tenant)
        blob = self._blob(f"{request.release_id}/{tenant.name}/entries-since-backup.jsonl")
        async with await server.connect(tenant.database) as conn:
            since = "SELECT count(*) FROM account_move WHERE id > %s"
            count = int(await fetch_one(conn, since, (after_id,)))
            if count == 0:
                return EntriesSinceBackup(tenant=tenant.name, count=0, export_url="")
            lines = entries_jsonl(conn, after_id)
            staged = await stage_stream(blob, lines, self._concurrency, heartbeat=False)
        metadata = {"sha256": staged.sha256, "entries": str(count)}
        await blob.commit_block_list(staged.blocks, metadata=metadata)
        log.warning(
            "entries written since the backup",
            release_id=request.release_id,
            tenant=tenant.name,
            count=count,
            blob=blob.blob_name,
        )
        return EntriesSinceBackup(tenant=tenant.name, count=count, export_url=blob.url)

    @activity.defn(name="restore_database")
    async def restore_database(self, request: BackupRequest) -> DatabaseRestore:
        """Restore beside the tenant database, then swap names; the replaced one is kept."""
        tenant = request.tenant
        current = tenant.database
        short = short_release_id(request.release_id)
        restored = checked_name(f"{current}_restore_{short}", "restore database")
        kept = checked_name(f"{current}_failed_{short}", "kept database")
        done = DatabaseRestore(tenant=tenant.name, restored_database=current, kept_database=kept)
        server = self._server(tenant)
        async with await server.admin() as admin:
            names = await existing_databases(admin, current, restored, kept)
            if kept in names and current in names:  # a retry after a completed swap
                return done
            if kept in names and restored in names:  # a retry after half a swap
                await rename_database(admin, restored, current)
                return done
            owner = await database_owner(admin, current)
            if owner is None:
                raise non_retryable(
                    f"tenant {tenant.name}: database {current} does not exist",
                    ErrorType.NOT_FOUND,
                )
            await drop_database(admin, restored)  # half-restored by a crashed attempt
            create = sql.SQL("CREATE DATABASE {} OWNER {}")
            await admin.execute(create.format(sql.Identifier(restored), sql.Identifier(owner)))
        try:
            sha256 = await self._restore_blob(request.backup, server, restored, keep_owner=True)
            if sha256 != request.backup.sha256:
                raise non_retryable(
                    f"tenant {tenant.name}: backup sha256 {sha256} differs from recorded "
                    f"{request.backup.sha256}; nothing swapped",
                    ErrorType.BACKUP_VERIFICATION_FAILED,
                )
        except BaseException:
            async with await server.admin() as admin:
                await drop_database(admin, restored)
            raise
        async with await server.admin() as admin:
            await swap_databases(admin, current, restored, kept)
        log.warning(
            "database restored from backup",
            release_id=request.release_id,
            tenant=tenant.name,
            kept=kept,
        )
        return done

    # ------------------------------------------------------------ cutover (pg_cutover.py)

    @activity.defn(name="close_database")
    async def close_database(self, request: CutoverRequest) -> DatabaseClosed:
        """Refuse new Odoo connections, wait out the grace period, terminate the rest."""
        tenant = request.tenant
        if request.grace_seconds < 0:
            raise non_retryable(
                f"tenant {tenant.name}: grace_seconds must be >= 0, not {request.grace_seconds}",
                ErrorType.INVALID_RELEASE,
            )
        server = self._server(tenant)
        revoked = await pg_cutover.close_to_others(server, request.release_id, tenant.database)
        terminated = await pg_cutover.drain(server, tenant.database, request.grace_seconds)
        _log(request).info("database closed", revoked=revoked, terminated=terminated)
        return DatabaseClosed(tenant.name, tenant.database, revoked, terminated)

    @activity.defn(name="take_restore_point")
    async def take_restore_point(self, request: CutoverRequest) -> RestorePoint:
        """An exact copy of the closed tenant database on the same server (once per release)."""
        tenant = request.tenant
        server = self._server(tenant)
        name, reused = await pg_cutover.take_restore_point(
            server, request.release_id, tenant.database
        )
        _log(request).info("restore point", name=name, reused=reused)
        return RestorePoint(tenant.name, tenant.database, name, reused)

    @activity.defn(name="swap_to_restore_point")
    async def swap_to_restore_point(self, request: CutoverRequest) -> DatabaseRestore:
        """The restore point becomes the tenant database by rename; the migrated one is kept."""
        tenant = request.tenant
        server = self._server(tenant)
        kept = await pg_cutover.swap_in_restore_point(server, request.release_id, tenant.database)
        _log(request).warning("restore point swapped in", kept=kept)
        return DatabaseRestore(tenant.name, tenant.database, kept)

    @activity.defn(name="reopen_database")
    async def reopen_database(self, request: CutoverRequest) -> DatabaseReopened:
        """CONNECT back to exactly the roles the close took it from."""
        tenant = request.tenant
        granted = await pg_cutover.reopen(self._server(tenant), request.release_id, tenant.database)
        _log(request).info("database reopened", granted=granted)
        return DatabaseReopened(tenant.name, tenant.database, granted)

    @activity.defn(name="drop_restore_point")
    async def drop_restore_point(self, request: CutoverRequest) -> RestorePoint:
        """Drop the restore point once the release can no longer roll this tenant back."""
        tenant = request.tenant
        name = await pg_cutover.drop_restore_point(
            self._server(tenant), request.release_id, tenant.database
        )
        _log(request).info("restore point dropped", name=name)
        return RestorePoint(tenant.name, tenant.database, name, False)

    @activity.defn(name="take_write_watermark")
    async def take_write_watermark(self, request: CutoverRequest) -> WriteWatermark:
        """At reopening: the write counters of every user table, kept in the tenant database."""
        tenant = request.tenant
        tables = await pg_cutover.take_write_watermark(
            self._server(tenant), request.release_id, tenant.database
        )
        _log(request).info("write watermark taken", tables=tables)
        return WriteWatermark(tenant.name, tables)

    @activity.defn(name="writes_since_reopen")
    async def writes_since_reopen(self, request: CutoverRequest) -> WritesSinceReopen:
        """Rows written in any user table since the watermark (read with the tenant closed)."""
        tenant = request.tenant
        known, written = await pg_cutover.writes_since_watermark(
            self._server(tenant), request.release_id, tenant.database
        )
        tables = sorted(written, key=lambda t: (-written[t], t))[:20]
        _log(request).info("writes since reopening", known=known, tables=tables)
        return WritesSinceReopen(tenant.name, known, sum(written.values()), tables)

    # ------------------------------------------------------------ plumbing

    def _blob(self, name: str) -> BlobClient:
        return self._blobs.get_blob_client(self._container, name)

    def _tool(self, name: str) -> str:
        return os.path.join(self._pg_bin_dir, name) if self._pg_bin_dir else name

    def _server_of(self, alias: str) -> PgServer:
        source = self._dsn_for
        if isinstance(source, Mapping):
            if alias not in source:
                raise non_retryable(
                    f"db_server {alias!r} is not configured", ErrorType.CONFIGURATION_MISSING
                )
            return PgServer(source[alias])
        return PgServer(source(alias))

    def _server(self, tenant: Tenant) -> PgServer:
        return self._server_of(tenant.db_server)

    def _scratch(
        self, server: PgServer, release_id: str, tenant: str, kind: str, template: str = ""
    ) -> ScratchDatabase:
        return ScratchDatabase(server, self.scratch_prefix, release_id, tenant, kind, template)

    async def _restore_blob(
        self, backup: DatabaseBackup, server: PgServer, database: str, *, keep_owner: bool
    ) -> str:
        """Stream the backup blob into `pg_restore -d database`; return the blob's sha256."""
        flags = [] if keep_owner else ["--no-owner", "--no-privileges"]
        command = [self._tool("pg_restore"), "--exit-on-error", "--no-password", *flags]
        process = await asyncio.create_subprocess_exec(
            *command,
            "-d",
            database,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=server.environment(database),
        )
        assert process.stdin is not None and process.stderr is not None
        stderr = asyncio.ensure_future(tail(process.stderr))
        digest = hashlib.sha256()
        done = 0
        try:
            try:
                download = await self._blob(backup.blob_name).download_blob()
                async for chunk in download.chunks():
                    digest.update(chunk)
                    done += len(chunk)
                    process.stdin.write(chunk)
                    await process.stdin.drain()
                    activity.heartbeat(done)
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass  # pg_restore stopped reading: its exit code and stderr say why
            except ResourceNotFoundError:
                raise non_retryable(
                    f"backup blob {backup.blob_name} not found", ErrorType.NOT_FOUND
                ) from None
            code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            message = await stderr
        if code != 0:
            raise non_retryable(
                f"pg_restore of {backup.blob_name} into {database} failed ({code}): {message}",
                ErrorType.BACKUP_VERIFICATION_FAILED,
            )
        return digest.hexdigest()


def _log(request: CutoverRequest) -> Any:
    return log.bind(release_id=request.release_id, tenant=request.tenant.name)


def _check_scripts(tenant: str, scripts: list[MigrationScript]) -> None:
    for script in scripts:
        actual = hashlib.sha256(script.sql.encode()).hexdigest()
        if actual != script.sha256:
            raise non_retryable(
                f"tenant {tenant}: migration {script.name} has sha256 {actual}, "
                f"pinned {script.sha256}",
                ErrorType.MIGRATION_FAILED,
            )


def _compare_counts(tenant: str, recorded: dict[str, int], restored: dict[str, int]) -> None:
    problems = []
    for table in sorted(set(recorded) | set(restored)):
        if table not in restored:
            problems.append(f"table {table} missing from the restore (recorded {recorded[table]})")
        elif table not in recorded:
            problems.append(f"table {table} restored ({restored[table]} rows) but never recorded")
        elif recorded[table] != restored[table]:
            problems.append(
                f"table {table}: recorded {recorded[table]} rows, restored {restored[table]}"
            )
    if problems:
        raise non_retryable(
            f"tenant {tenant}: backup verification failed: " + "; ".join(problems),
            ErrorType.BACKUP_VERIFICATION_FAILED,
        )


async def _committed_backup(
    blob: BlobClient, counts_blob: BlobClient, tenant: Tenant
) -> DatabaseBackup | None:
    """The committed backup of an earlier attempt, if its metadata and row counts are complete."""
    try:
        properties = await blob.get_blob_properties()
        metadata = {k.lower(): v for k, v in (properties.metadata or {}).items()}
        if not all(metadata.get(key) for key in BACKUP_METADATA):
            return None
        counts_json = await (await counts_blob.download_blob()).readall()
    except ResourceNotFoundError:
        return None
    if hashlib.sha256(counts_json).hexdigest() != metadata["row_counts_sha256"]:
        return None
    return DatabaseBackup(
        tenant=tenant.name,
        database=metadata["database"],
        url=blob.url,
        blob_name=blob.blob_name,
        bytes=int(metadata["bytes"]),
        sha256=metadata["sha256"],
        row_counts=json.loads(counts_json),
        max_move_id=int(metadata["max_move_id"]),
        taken_at=metadata["taken_at"],
    )
