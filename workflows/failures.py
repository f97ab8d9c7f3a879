"""What a failed activity or child workflow says, without Temporal's wrappers."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from workflows.contracts import VERDICTS


def cause(err: BaseException) -> str:
    """The innermost message, prefixed with its error type when it has one."""
    while err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, ApplicationError) and err.type:
        return f"{err.type}: {err.message}"
    return str(err)


def is_verdict(err: BaseException) -> bool:
    """The step ran and judged the tenant (see contracts.VERDICTS); else it could not run.

    The activity's own error is the first ApplicationError under Temporal's wrappers (what
    it was raised from, a driver error say, may follow it in the chain).
    """
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, ApplicationError):
            return current.type in VERDICTS
        current = current.__cause__
    return False
