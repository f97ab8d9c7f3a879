"""`finrelease spec|calendar|evidence` as a pipeline runs them: subprocesses and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from governance import EvidenceChain

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPT = Path(sys.executable).parent / "finrelease"
COMMAND = (
    [str(SCRIPT)]
    if SCRIPT.exists()
    else [sys.executable, "-c", "from starter.cli import main; main()"]
)


def finrelease(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def validate(spec: Path) -> subprocess.CompletedProcess[str]:
    return finrelease(
        "spec", "validate", spec,
        "--inventory", EXAMPLES / "tenants.yaml",
        "--policy", EXAMPLES / "policy.yaml",
        "--calendars", EXAMPLES / "calendars",
    )  # fmt: skip


def test_spec_validate_prints_normalised_spec_and_sha256():
    result = validate(EXAMPLES / "release.yaml")
    assert result.returncode == 0, result.stderr
    *body, last = result.stdout.strip().splitlines()
    assert last.startswith("sha256: ") and len(last.split()[1]) == 64
    assert '"release_id": "FIN-2026-11-042"' in result.stdout
    assert "wave canary: berlin" in body


def test_spec_validate_prints_every_error_with_its_path_and_exits_2(tmp_path):
    spec = tmp_path / "release.yaml"
    text = (EXAMPLES / "release.yaml").read_text()
    text = text.replace("risk: medium", "risk: critical").replace(
        "tenants: all", "tenants: [paris]"
    )
    spec.write_text(text.replace("max_parallel: 2", "max_paralel: 2"))
    result = validate(spec)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "risk: must be one of low | medium | high | emergency, not 'critical'" in lines
    assert "tenants: unknown tenant(s): paris" in lines
    assert any(line.startswith("rollout.max_paralel: unknown key") for line in lines)


def test_spec_validate_prints_a_key_holding_terminal_escapes_inert(tmp_path):
    spec = tmp_path / "release.yaml"
    text = (EXAMPLES / "release.yaml").read_text()
    spec.write_text(text + '"\\e[2J\\e[32mall good": 1\n')  # clear screen, then green
    result = validate(spec)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert "\\x1b[2J\\x1b[32mall good: unknown key" in result.stderr


def test_spec_validate_reports_a_missing_migration_file(tmp_path):
    spec = tmp_path / "release.yaml"
    spec.write_text((EXAMPLES / "release.yaml").read_text())
    result = validate(spec)
    assert result.returncode == 2
    assert "migrations[0]: file not found" in result.stderr


def test_spec_validate_refuses_a_migration_too_big_to_travel_with_the_release(tmp_path):
    spec = tmp_path / "release.yaml"
    spec.write_text((EXAMPLES / "release.yaml").read_text())
    (tmp_path / "migrations").mkdir()
    script = tmp_path / "migrations" / "042_fix_tax_tags.sql"
    script.write_text("UPDATE account_tax SET active = true; -- padded\n" * 40_000)  # 1,875 KiB
    result = validate(spec)
    assert result.returncode == 2
    assert "migrations: 1,875 KiB of SQL, at most 1,024 KiB" in result.stderr


def test_calendar_check_json_matches_the_architecture_example():
    result = finrelease(
        "calendar", "check", EXAMPLES / "calendars" / "berlin.yaml",
        "--at", "2026-11-27T10:00:00+01:00", "--json",
    )  # fmt: skip
    assert result.returncode == 1  # not allowed now: a failed check
    decision = json.loads(result.stdout)
    assert decision["allowed"] is False and decision["frozen"] is True
    assert decision["in_window"] is False
    assert decision["next_allowed"] == "2026-12-05T20:00:00+01:00"
    assert decision["freeze_ends"] == "2026-12-04T00:00:00+01:00"
    assert decision["reasons"]


def test_calendar_check_exits_0_when_allowed():
    result = finrelease(
        "calendar", "check", EXAMPLES / "calendars" / "demo.yaml", "--at", "2026-11-30T12:00:00"
    )
    assert result.returncode == 0, result.stderr
    assert "allowed" in result.stdout


def test_calendar_check_refuses_a_bad_calendar_with_exit_2(tmp_path):
    calendar = tmp_path / "bad.yaml"
    calendar.write_text(
        "timezone: Europe/Berlin\ndeployment_windows: [{days: [sat], start: 20:00, end: '24:00'}]\n"
    )
    result = finrelease("calendar", "check", calendar, "--at", "2026-11-27T10:00:00")
    assert result.returncode == 2
    assert "deployment_windows[0].start" in result.stderr


def test_calendar_check_refuses_a_bad_instant_with_exit_2():
    result = finrelease(
        "calendar", "check", EXAMPLES / "calendars" / "berlin.yaml", "--at", "next friday"
    )
    assert result.returncode == 2
    assert "--at" in result.stderr


def test_calendar_show_lists_freezes_and_windows():
    result = finrelease(
        "calendar",
        "show",
        EXAMPLES / "calendars" / "berlin.yaml",
        "--from",
        "2026-11-23",
        "--days",
        "14",
    )
    assert result.returncode == 0, result.stderr
    assert "month-end close November 2026" in result.stdout
    assert "Sat 2026-12-05 20:00 +0100" in result.stdout
    assert "no (frozen)" in result.stdout  # the window of 28 November lies in the close


def test_evidence_verify_accepts_an_intact_bundle(tmp_path):
    chain = EvidenceChain("FIN-2026-11-042")
    chain.append("spec", "alice@example.com", {"sha256": "ab" * 32}, "2026-11-23T09:00:00+00:00")
    chain.append("outcome", "finrelease", {"result": "Completed"}, "2026-11-23T11:00:00+00:00")
    bundle = tmp_path / "FIN-2026-11-042.json"
    bundle.write_text(json.dumps(chain.bundle()))
    result = finrelease("evidence", "verify", bundle)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == f"ok: 2 entries, 0 signed statement(s) re-verified, head {chain.head}"
    )


def test_evidence_verify_names_the_first_broken_entry_and_exits_1(tmp_path):
    chain = EvidenceChain("FIN-2026-11-042")
    for seq in range(3):
        chain.append("note", "auditor", {"n": seq}, "2026-11-23T09:00:00+00:00")
    bundle = chain.bundle()
    bundle["entries"][1]["data"]["n"] = 42
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    result = finrelease("evidence", "verify", path)
    assert result.returncode == 1
    assert "broken at entry 1" in result.stderr


def test_evidence_verify_refuses_a_file_that_is_not_json_with_exit_2(tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text("{not json")
    assert finrelease("evidence", "verify", path).returncode == 2


def test_unknown_option_is_a_usage_error_with_exit_2():
    assert finrelease("calendar", "check", "--colour", "red").returncode == 2
