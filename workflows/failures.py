"""What a failed activity or child workflow says, without Temporal's wrappers."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


def cause(err: BaseException) -> str:
    """The innermost message, prefixed with its error type when it has one."""
    while err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, ApplicationError) and err.type:
        return f"{err.type}: {err.message}"
    return str(err)
