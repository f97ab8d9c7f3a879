"""Tenant inventory (`tenants.yaml`): where each tenant runs and which rules govern it.

The document is a mapping with one key, `tenants`, a list of tenants. Names are DNS labels
(they appear in workflow ids and Kubernetes objects) and unique; `db_server` is an alias
(`[A-Za-z0-9_]+`, resolved by the worker as `FINRELEASE_PG_<ALIAS>_DSN`), never a DSN;
`deployments` maps the roles web (required), worker and cron to Deployment names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from governance.documents import Problems, join, load_yaml, problems_only, quoted

TIERS = ("shared", "dedicated")
DEPLOYMENT_ROLES = ("web", "worker", "cron")
_NAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_REQUIRED = (
    "name",
    "tier",
    "namespace",
    "deployments",
    "db_server",
    "database",
    "filestore",
    "url",
    "timezone",
    "calendar",
)


@dataclass(frozen=True)
class Tenant:
    """One Odoo tenant. References only: no DSN, key or token ever lives here."""

    name: str
    tier: str  # shared | dedicated
    namespace: str
    deployments: dict[str, str]  # role (web | worker | cron) -> Deployment name
    db_server: str  # alias; the worker resolves FINRELEASE_PG_<ALIAS>_DSN
    database: str
    filestore: str  # blob prefix of the tenant's filestore
    url: str
    timezone: str
    calendar: str  # name of a freeze calendar (calendars/<name>.yaml)
    container: str = "odoo"  # name of the Odoo container inside each Deployment
    update_command: list[str] = field(default_factory=list)  # empty: the default odoo -u command


@dataclass(frozen=True)
class Inventory:
    tenants: tuple[Tenant, ...]

    def get(self, name: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tenants)


@problems_only
def parse_inventory(text: str) -> Inventory:
    """Parse `tenants.yaml`; raise `ValidationFailed` listing every problem."""
    document = load_yaml(text)
    problems = Problems()
    root = problems.keys(document, "", required=("tenants",))
    tenants: list[Tenant] = []
    if root is not None and "tenants" in root:
        items = root["tenants"]
        if not isinstance(items, list) or not items:
            problems.add("tenants", "must be a non-empty list of tenants")
        else:
            for i, item in enumerate(items):
                tenant = _tenant(item, join("tenants", i), problems)
                if tenant is not None:
                    tenants.append(tenant)
            seen: set[str] = set()
            for i, tenant in enumerate(tenants):
                if tenant.name in seen:
                    problems.add(
                        join(join("tenants", i), "name"), f"duplicate {quoted(tenant.name)}"
                    )
                seen.add(tenant.name)
    problems.raise_if_any()
    return Inventory(tuple(tenants))


def _tenant(value: Any, path: str, problems: Problems) -> Tenant | None:
    before = len(problems.items)
    item = problems.keys(value, path, _REQUIRED, ("container", "update_command"))
    if item is None or len(problems.items) > before:
        return None
    name = problems.text(
        item["name"], join(path, "name"), _NAME, "must be a DNS label (a-z, 0-9, -)"
    )
    tier = problems.choice(item["tier"], join(path, "tier"), TIERS)
    namespace = problems.text(
        item["namespace"], join(path, "namespace"), _NAME, "must be a DNS label"
    )
    deployments = _deployments(item["deployments"], join(path, "deployments"), problems)
    db_server = problems.text(
        item["db_server"],
        join(path, "db_server"),
        r"[A-Za-z0-9_]+",
        "must be an alias ([A-Za-z0-9_]+), never a DSN",
    )
    texts = {
        key: problems.text(item[key], join(path, key))
        for key in ("database", "filestore", "calendar")
    }
    url = problems.text(item["url"], join(path, "url"), r"https?://\S+", "must be an http(s) URL")
    timezone = _timezone(item["timezone"], join(path, "timezone"), problems)
    container = problems.text(item.get("container", "odoo"), join(path, "container"))
    command = problems.texts(item.get("update_command", []), join(path, "update_command"), False)
    if len(problems.items) > before:
        return None
    return Tenant(
        name=str(name),
        tier=str(tier),
        namespace=str(namespace),
        deployments=dict(deployments or {}),
        db_server=str(db_server),
        database=str(texts["database"]),
        filestore=str(texts["filestore"]),
        url=str(url),
        timezone=str(timezone),
        calendar=str(texts["calendar"]),
        container=str(container),
        update_command=list(command or []),
    )


def _deployments(value: Any, path: str, problems: Problems) -> dict[str, str] | None:
    mapping = problems.keys(value, path, required=("web",), optional=DEPLOYMENT_ROLES)
    if mapping is None:
        return None
    names = {
        role: problems.text(name, join(path, role), _NAME, "must be a DNS label")
        for role, name in mapping.items()
        if role in DEPLOYMENT_ROLES
    }
    return {role: name for role, name in names.items() if name is not None}


def check_timezone(value: Any, path: str, problems: Problems) -> str | None:
    """An IANA zone name known to zoneinfo (`Europe/Berlin`)."""
    if not isinstance(value, str) or not value:
        problems.add(path, f"must be an IANA time zone like Europe/Berlin, not {quoted(value)}")
        return None
    try:
        ZoneInfo(value)
    except (ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError; caught below
        problems.add(path, f"unknown time zone {quoted(value)}")
        return None
    except KeyError:
        problems.add(path, f"unknown time zone {quoted(value)}")
        return None
    return value


_timezone = check_timezone
