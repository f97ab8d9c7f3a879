"""A minimal workflow that counts signed approvals the way the release's validators will:
governance verifies in the update validator, so a refused statement never enters history."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from governance.bundle import BundleRefused, verify_bundle
    from governance.statements import StatementRefused, VerifiedStatement, verify_statement
    from governance.trust import parse_trust_root


@dataclass
class ProbeInput:
    release_id: str
    digest: str
    bundle: str  # canonical bundle JSON; the real worker reads it from its own configuration
    bundle_signatures: list[str]
    trust_root: str


@dataclass
class SignedStatement:
    statement: str
    signature: str
    comment: str = ""


@dataclass
class ProbeResult:
    approvers: list[str] = field(default_factory=list)


@workflow.defn
class StatementProbe:
    @workflow.init
    def __init__(self, probe: ProbeInput) -> None:
        self._probe = probe
        try:
            verdict = verify_bundle(
                probe.bundle.encode(), probe.bundle_signatures, parse_trust_root(probe.trust_root)
            )
        except BundleRefused as exc:
            raise ApplicationError(str(exc), type="InvalidRelease", non_retryable=True) from None
        self._keys = verdict.bundle.keys_of()
        self._nonces: set[str] = set()
        self._approvers: list[str] = []

    @workflow.run
    async def run(self, probe: ProbeInput) -> ProbeResult:
        await workflow.wait_condition(lambda: len(self._approvers) >= 2)
        return ProbeResult(list(self._approvers))

    @workflow.update
    def approve(self, signed: SignedStatement) -> str:
        verified = self._verify(signed)
        self._nonces.add(verified.statement.nonce)
        self._approvers.append(verified.identity)
        return verified.identity

    @approve.validator
    def _check_approval(self, signed: SignedStatement) -> None:
        self._verify(signed)

    def _verify(self, signed: SignedStatement) -> VerifiedStatement:
        try:
            return verify_statement(
                signed.statement,
                signed.signature,
                kind="approve",
                release_id=self._probe.release_id,
                bundle_digest=self._probe.digest,
                keys_of=self._keys,
                now=workflow.now(),
                seen_nonces=self._nonces,
                comment=signed.comment,
            )
        except StatementRefused as exc:
            raise ApplicationError(str(exc), type="StatementRefused", non_retryable=True) from None
