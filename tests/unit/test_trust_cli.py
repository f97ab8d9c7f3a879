"""`finrelease governance ...` and `finrelease sign-statement` as administrators, approvers
and auditors run them, with keys made by ssh-keygen and signatures checked by it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from governance.bundle import parse_bundle
from governance.statements import verify_statement

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="./dev bootstrap installs it"),
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPT = Path(sys.executable).parent / "finrelease"
COMMAND = (
    [str(SCRIPT)]
    if SCRIPT.exists()
    else [sys.executable, "-c", "from starter.cli import main; main()"]
)
MEMBERS = (
    "bob@example.com",
    "dan@example.com",
    "carol@example.com",
    "erin@example.com",
    "cfo@example.com",
)
ADMINS = ("alice@example.com", "grace@example.com", "hsm@example.com")
DIGEST = "ab" * 32


def finrelease(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def keygen(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ssh-keygen", *map(str, args)], input=stdin, capture_output=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys for every persona, members.yaml, trust_root.yaml and a packed bundle."""
    home = tmp_path_factory.mktemp("governance")
    for who in MEMBERS + ADMINS:
        kind = ["-t", "ecdsa", "-b", "256"] if who.startswith("hsm") else ["-t", "ed25519"]
        assert keygen("-q", *kind, "-N", "", "-C", who, "-f", home / who).returncode == 0

    def pub(who: str) -> str:
        return " ".join((home / f"{who}.pub").read_text().split()[:2])

    (home / "members.yaml").write_text("".join(f"{who}: ['{pub(who)}']\n" for who in MEMBERS))
    admins = "".join(f"  {who}: ['{pub(who)}']\n" for who in ADMINS)
    (home / "trust_root.yaml").write_text(f"threshold: 2\nadmins:\n{admins}")
    result = finrelease(
        "governance", "pack", "--policy", EXAMPLES / "policy.yaml", "--inventory", EXAMPLES / "tenants.yaml",
        "--calendars", EXAMPLES / "calendars", "--members", home / "members.yaml", "--serial", "5",
        "-o", home / "bundle.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return home


def test_pack_prints_the_digest_of_the_bundle_it_wrote(world):
    bundle = parse_bundle((world / "bundle.json").read_bytes())
    result = finrelease("governance", "show", world / "bundle.json")
    assert result.returncode == 0, result.stderr
    assert f"bundle {bundle.digest} serial 5" in result.stdout
    assert "  finance: carol@example.com" in result.stdout
    assert "  berlin: calendar berlin, Europe/Berlin" in result.stdout
    assert "carol@example.com: ssh-ed25519 SHA256:" in result.stdout


def test_two_admins_one_through_the_cli_one_through_ssh_keygen_satisfy_the_trust_root(
    world, tmp_path
):
    bundle = tmp_path / "bundle.json"
    shutil.copy(world / "bundle.json", bundle)
    hsm = keygen("-Y", "sign", "-n", "finrelease", "-f", world / "hsm@example.com", bundle)
    assert hsm.returncode == 0, hsm.stderr  # ecdsa-sha2-nistp256, written to bundle.json.sig
    (tmp_path / "hsm.sig").write_bytes((tmp_path / "bundle.json.sig").read_bytes())
    signed = finrelease("governance", "sign", bundle, "--key", world / "alice@example.com")
    assert signed.returncode == 0, signed.stderr  # written to bundle.json.sig too, by default
    assert (tmp_path / "bundle.json.sig").read_bytes() != (tmp_path / "hsm.sig").read_bytes()

    def verify(*signatures: Path) -> subprocess.CompletedProcess[str]:
        options = [arg for sig in signatures for arg in ("-s", str(sig))]
        return finrelease(
            "governance", "verify", bundle, "--trust-root", world / "trust_root.yaml", *options
        )

    only_alice = verify(tmp_path / "bundle.json.sig")
    assert only_alice.returncode == 1
    assert "quorum_not_met: 2 of 3 governance administrators" in only_alice.stderr
    both = verify(tmp_path / "bundle.json.sig", tmp_path / "hsm.sig")
    assert both.returncode == 0, both.stderr
    assert "signed by alice@example.com, hsm@example.com (2 of 3, 2 required)" in both.stdout


def finrelease_signature(world: Path) -> None:
    result = finrelease(
        "governance",
        "sign",
        world / "bundle.json",
        "--key",
        world / "alice@example.com",
        "-o",
        world / "alice.sig",
    )
    assert result.returncode == 0, result.stderr


def test_a_bundle_edited_after_signing_is_refused(world, tmp_path):
    finrelease_signature(world)
    edited = tmp_path / "bundle.json"
    edited.write_bytes(
        (world / "bundle.json")
        .read_bytes()
        .replace(b"bob@example.com, dan@", b"bob@example.com, eve@")
    )
    result = finrelease(
        "governance",
        "verify",
        edited,
        "--trust-root",
        world / "trust_root.yaml",
        "-s",
        world / "alice.sig",
    )
    assert result.returncode == 2
    assert "'eve@example.com' has no key under members" in result.stderr


def test_approver_signs_a_statement_that_the_workflow_and_ssh_keygen_accept(world, tmp_path):
    out = tmp_path / "approve.json"
    result = finrelease(
        "sign-statement", "approve", "--release", "FIN-2026-11-042", "--digest", DIGEST, "--role", "finance",
        "--as", "carol@example.com", "--key", world / "carol@example.com", "--comment", "checked", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bundle = parse_bundle((world / "bundle.json").read_bytes())
    verified = verify_statement(
        out.read_bytes(), (tmp_path / "approve.json.sig").read_text(), kind="approve", release_id="FIN-2026-11-042",
        bundle_digest=DIGEST, keys_of=bundle.keys_of(), now=datetime.now(UTC), seen_nonces=set(), comment="checked",
    )  # fmt: skip
    assert verified.identity == "carol@example.com" and verified.statement.role == "finance"
    signers = finrelease("governance", "allowed-signers", world / "bundle.json")
    assert signers.returncode == 0, signers.stderr
    (tmp_path / "allowed_signers").write_text(signers.stdout)
    for identity, expected in (("carol@example.com", 0), ("bob@example.com", 255)):
        check = keygen(
            "-Y", "verify", "-f", tmp_path / "allowed_signers", "-I", identity, "-n", "finrelease",
            "-s", tmp_path / "approve.json.sig", stdin=out.read_bytes(),
        )  # fmt: skip
        assert check.returncode == expected, check.stderr


def test_statement_without_key_is_signed_by_ssh_keygen_for_agent_and_fido_keys(world, tmp_path):
    out = tmp_path / "promote.json"
    result = finrelease(
        "sign-statement", "promote", "--release", "FIN-2026-11-042", "--digest", DIGEST, "--wave", "rest",
        "--as", "erin@example.com", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ssh-keygen -Y sign -n finrelease" in result.stdout
    assert not (tmp_path / "promote.json.sig").exists()
    assert (
        keygen("-Y", "sign", "-n", "finrelease", "-f", world / "erin@example.com", out).returncode
        == 0
    )
    bundle = parse_bundle((world / "bundle.json").read_bytes())
    verified = verify_statement(
        out.read_bytes(), (tmp_path / "promote.json.sig").read_text(), kind="promote", release_id="FIN-2026-11-042",
        bundle_digest=DIGEST, keys_of=bundle.keys_of(), now=datetime.now(UTC), seen_nonces=set(),
    )  # fmt: skip
    assert verified.statement.wave == "rest"
    assert json.loads(out.read_text())["signer"] == "erin@example.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--digest", "not-a-digest", "--as", "carol@example.com"],
            "bundle_digest: must be 64 lowercase hex",
        ),
        (["--digest", DIGEST], "who is acting?"),
        (
            ["--digest", DIGEST, "--as", "carol@example.com", "--lifetime", "2d"],
            "--lifetime: must be",
        ),
        (["--digest", DIGEST, "--as", "carol\x1b[2J@example.com"], "signer: identity "),
        (
            [
                "--digest",
                DIGEST,
                "--as",
                "carol@example.com",
                "--key",
                "k",
                "--key-vault",
                "https://v.vault.azure.net/keys/k",
            ],
            "--key and --key-vault: pass one of them",
        ),
    ],
)
def test_sign_statement_refuses_bad_input_naming_the_field(tmp_path, args, message):
    env = {
        key: value for key, value in __import__("os").environ.items() if key != "FINRELEASE_USER"
    }
    result = finrelease(
        "sign-statement", "approve", "--release", "FIN-2026-11-042", "--role", "finance", *args,
        "--out", tmp_path / "s.json", env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert "\x1b" not in result.stderr
    assert not (tmp_path / "s.json").exists()


def test_digest_shows_what_an_approver_signs_and_follows_the_migration_content(world, tmp_path):
    from governance.release_digest import release_digest
    from governance.spec import parse_spec

    spec = tmp_path / "release.yaml"
    shutil.copy(EXAMPLES / "release.yaml", spec)
    (tmp_path / "migrations").mkdir()
    script = tmp_path / "migrations" / "042_fix_tax_tags.sql"
    script.write_text("UPDATE account_tax SET active = true;\n")

    def digest() -> str:
        result = finrelease("governance", "digest", spec, "--bundle", world / "bundle.json")
        assert result.returncode == 0, result.stderr
        assert "wave canary: berlin" in result.stdout
        assert "calendar berlin sha256 " in result.stdout
        return result.stdout.strip().splitlines()[-1].removeprefix("digest: ")

    first = digest()
    bundle = parse_bundle((world / "bundle.json").read_bytes())
    release = parse_spec(spec.read_text(), bundle.inventory, bundle.policy, bundle.calendars)
    assert first == release_digest(release, [(release.migrations[0], script.read_text())], bundle)
    script.write_text("UPDATE account_tax SET active = false;\n")
    assert digest() != first
