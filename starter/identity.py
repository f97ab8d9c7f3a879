"""Who is acting: the one seam between the CLI and an identity source.

Today the acting user comes from `--as` or `FINRELEASE_USER`: fine for a demo and for a
pipeline that sets it from its own identity, but it is a *claim*, not a proof. The
workflow enforces the approval rules (segregation of duties, role membership, spec
sha256) on whatever identity it is given, so a deployment that needs a verified identity
replaces `resolve_actor` and nothing else:

- Entra ID (people): acquire a token with `azure.identity` (e.g.
  `InteractiveBrowserCredential` or `AzureCliCredential`), validate it against the
  tenant's JWKS, and return its `preferred_username` / `upn` claim; refuse `--as` when it
  names someone else.
- Pipeline identity: in Azure Pipelines read `BUILD_REQUESTEDFOREMAIL` for the person who
  queued the run, or the service connection's workload identity for the pipeline itself
  (GitHub Actions: the OIDC token's `actor`).

A claimed identity can still be forged by anyone who can call Temporal directly, so put
the same check on the server side too: a Temporal authorizer / claim mapper (self-hosted)
or a namespace with API keys per person (Temporal Cloud) restricts who may send updates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

USER_VARIABLE = "FINRELEASE_USER"


class IdentityMissing(Exception):
    """No acting user could be determined."""


def resolve_actor(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The acting user: `--as` when given, else `FINRELEASE_USER`; IdentityMissing otherwise."""
    actor = (explicit or environ.get(USER_VARIABLE, "")).strip()
    if not actor:
        raise IdentityMissing(f"who is acting? pass --as USER or set {USER_VARIABLE}")
    return actor
