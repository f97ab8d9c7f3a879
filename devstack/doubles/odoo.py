"""Odoo JSON-RPC double answered from each tenant's real Odoo-shaped PostgreSQL database.

Per tenant, under `/<tenant>`: `GET /web/health`, `POST /web/session/authenticate`
(checks the configured login and password, sets a `session_id` cookie) and
`POST /web/dataset/call_kw` for `read_group` on `account.move.line` (grouped by account),
`search_read` and `fields_get` on `ir.cron` — the SQL runs on the tenant's database, so the
numbers the smoke checks compare are the real ones.

As Odoo does (odoo/api.py `Environment.company` / `Environment.companies`, and the
multi-company record rules that use them): records are scoped to the context's
`allowed_company_ids`, or to *all* the user's companies when the context has none; the
current company is the first of them, or the user's main company; asking for a company the
user may not access is an AccessError. An account's display name is "<code> <name>"
with the code as the current (first allowed) company sees it: on 18 `code_store` of its root
(addons/account/models/account_account.py `_field_to_sql`). 18's `ir.cron` has
`failure_count` and `first_failure_date` (odoo/addons/base/models/ir_cron.py); asking 17 for
them is an error, as it is in Odoo.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from aiohttp import web
from psycopg import sql

from devstack.doubles._server import HttpDouble

_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_CRON_FIELDS = (
    "id",
    "name",
    "active",
    "nextcall",
    "lastcall",
    "interval_number",
    "interval_type",
)
_CRON_FIELDS_18 = ("failure_count", "first_failure_date")
_FIELD_TYPES = {"failure_count": "integer", "first_failure_date": "datetime"}


@dataclass(frozen=True)
class OdooTenantDouble:
    dsn: str
    login: str = "smoke"
    password: str = "smoke"
    company_ids: tuple[int, ...] = (1,)  # companies the user may access, main one first
    settings_admin: bool = True  # base.group_system: the only group that may read ir.cron


class OdooError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


class OdooDouble(HttpDouble):
    def __init__(self, tenants: dict[str, OdooTenantDouble], port: int = 0) -> None:
        super().__init__(port)
        self.tenants = tenants
        self.healthy: dict[str, bool] = {}
        self._sessions: dict[str, str] = {}  # session id -> tenant

    def tenant_url(self, tenant: str) -> str:
        return f"{self.url}/{tenant}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{tenant}/web/health", self._health)
        app.router.add_post("/{tenant}/web/session/authenticate", self._authenticate)
        app.router.add_post("/{tenant}/web/dataset/call_kw", self._call_kw)
        app.router.add_post("/{tenant}/web/dataset/call_kw/{path:.*}", self._call_kw)

    def _tenant(self, request: web.Request) -> tuple[str, OdooTenantDouble]:
        name = request.match_info["tenant"]
        if name not in self.tenants:
            raise web.HTTPNotFound(text=f"no tenant {name}")
        return name, self.tenants[name]

    async def _health(self, request: web.Request) -> web.Response:
        name, _ = self._tenant(request)
        if not self.healthy.get(name, True):
            return web.json_response({"status": "fail"}, status=503)
        return web.json_response({"status": "pass"})

    async def _authenticate(self, request: web.Request) -> web.Response:
        name, tenant = self._tenant(request)
        payload = await request.json()
        params = payload.get("params", {})
        if params.get("login") != tenant.login or params.get("password") != tenant.password:
            return _rpc_error(payload, OdooError("odoo.exceptions.AccessDenied", "Access Denied"))
        session = secrets.token_hex(16)
        self._sessions[session] = name
        response = _rpc_result(
            payload, {"uid": 2, "db": params.get("db"), "username": tenant.login}
        )
        response.set_cookie("session_id", session, path="/")
        return response

    async def _call_kw(self, request: web.Request) -> web.Response:
        name, tenant = self._tenant(request)
        payload = await request.json()
        if self._sessions.get(request.cookies.get("session_id", "")) != name:
            return _rpc_error(
                payload, OdooError("odoo.http.SessionExpiredException", "Session expired")
            )
        params = payload.get("params", {})
        try:
            result = await self._dispatch(tenant, params)
        except OdooError as error:
            return _rpc_error(payload, error)
        return _rpc_result(payload, result)

    async def _dispatch(self, tenant: OdooTenantDouble, params: dict[str, Any]) -> Any:
        model, method = params.get("model"), params.get("method")
        kwargs = params.get("kwargs", {})
        if model == "account.move.line" and method == "read_group":
            return await self._read_group_by_account(tenant, kwargs)
        if model == "ir.cron" and not tenant.settings_admin:
            # odoo/addons/base/security/ir.model.access.csv: ir_cron for group_system only
            raise OdooError(
                "odoo.exceptions.AccessError",
                "You are not allowed to access 'Scheduled Actions' (ir.cron) records.",
            )
        if model == "ir.cron" and method == "search_read":
            return await self._search_read_cron(tenant, kwargs)
        if model == "ir.cron" and method == "fields_get":
            return await self._fields_get_cron(tenant, kwargs)
        raise OdooError("odoo.exceptions.UserError", f"double does not implement {model}.{method}")

    async def _read_group_by_account(self, tenant: OdooTenantDouble, kwargs: dict) -> list[dict]:
        groupby = kwargs.get("groupby") or []
        if list(groupby) != ["account_id"]:
            raise OdooError("odoo.exceptions.UserError", "double groups only by account_id")
        companies = _allowed_companies(tenant, kwargs)
        where = _where(kwargs.get("domain", []), alias="l")
        code: sql.Composable
        if await _series(tenant.dsn) == "18.0":
            code = sql.SQL(
                "a.code_store ->> (SELECT split_part(parent_path, '/', 1) FROM res_company"
                " WHERE id = {})"
            ).format(sql.Literal(companies[0]))
        else:
            code = sql.SQL("a.code")
        query = sql.SQL(
            "SELECT a.id, {code}, a.name, count(*), sum(l.debit), sum(l.credit), sum(l.balance)"
            " FROM account_move_line l JOIN account_account a ON a.id = l.account_id"
            " WHERE {where} AND l.company_id = ANY(%s)"
            " GROUP BY a.id, 2, a.name ORDER BY 2"
        ).format(code=code, where=where[0])
        rows = await _fetch(tenant.dsn, query, [*where[1], list(companies)])
        return [
            {
                "account_id": [row[0], f"{row[1]} {_text(row[2])}"],
                "account_id_count": row[3],
                "debit": float(row[4] or 0),
                "credit": float(row[5] or 0),
                "balance": float(row[6] or 0),
                "__domain": [["account_id", "=", row[0]]],
            }
            for row in rows
        ]

    async def _search_read_cron(self, tenant: OdooTenantDouble, kwargs: dict) -> list[dict]:
        known = await self._cron_fields(tenant)
        asked = kwargs.get("fields") or list(known)
        unknown = [f for f in asked if f not in known]
        if unknown:
            raise OdooError(
                "builtins.ValueError", f"Invalid field {unknown[0]!r} on model 'ir.cron'"
            )
        fields = list(asked)
        if "id" not in fields:
            fields.insert(0, "id")
        where = _where(kwargs.get("domain", []), alias="c")
        query = sql.SQL("SELECT {} FROM ir_cron c WHERE {} ORDER BY c.id").format(
            sql.SQL(", ").join(sql.SQL("c.") + sql.Identifier(f) for f in fields), where[0]
        )
        rows = await _fetch(tenant.dsn, query, where[1])
        return [
            {f: _odoo_value(f, value) for f, value in zip(fields, row, strict=True)} for row in rows
        ]

    async def _fields_get_cron(self, tenant: OdooTenantDouble, kwargs: dict) -> dict:
        known = await self._cron_fields(tenant)
        wanted = kwargs.get("allfields") or list(known)
        return {f: {"type": _FIELD_TYPES.get(f, "char")} for f in wanted if f in known}

    async def _cron_fields(self, tenant: OdooTenantDouble) -> tuple[str, ...]:
        if await _series(tenant.dsn) == "18.0":
            return _CRON_FIELDS + _CRON_FIELDS_18
        return _CRON_FIELDS


async def _series(dsn: str) -> str:
    rows = await _fetch(
        dsn,
        sql.SQL("SELECT latest_version FROM ir_module_module WHERE name = 'base'"),
        [],
    )
    return ".".join(str(rows[0][0]).split(".")[:2]) if rows else ""


def _allowed_companies(tenant: OdooTenantDouble, kwargs: dict) -> tuple[int, ...]:
    """`allowed_company_ids` of the call's context, checked against the user's companies;
    without it every company of the user, the main one first (odoo/api.py)."""
    asked = (kwargs.get("context") or {}).get("allowed_company_ids") or list(tenant.company_ids)
    refused = [c for c in asked if c not in tenant.company_ids]
    if refused:
        raise OdooError(
            "odoo.exceptions.AccessError", "Access to unauthorized or invalid companies."
        )
    return tuple(int(c) for c in asked)


def _where(domain: list, alias: str) -> tuple[sql.Composable, list[Any]]:
    """A conjunction of simple `[field, op, value]` leaves (all the smoke checks send)."""
    clauses: list[sql.Composable] = []
    values: list[Any] = []
    for leaf in domain:
        if isinstance(leaf, str):
            if leaf == "&":
                continue
            raise OdooError("odoo.exceptions.UserError", f"double supports only '&', not {leaf!r}")
        field_name, operator, value = leaf
        if operator == "in":
            clauses.append(
                sql.SQL("{}.{} = ANY(%s)").format(sql.Identifier(alias), sql.Identifier(field_name))
            )
        elif operator in _OPERATORS:
            clauses.append(
                sql.SQL("{}.{} " + _OPERATORS[operator] + " %s").format(
                    sql.Identifier(alias), sql.Identifier(field_name)
                )
            )
        else:
            raise OdooError("odoo.exceptions.UserError", f"double does not support {operator!r}")
        values.append(list(value) if operator == "in" else value)
    if not clauses:
        return sql.SQL("TRUE"), values
    return sql.SQL(" AND ").join(clauses), values


async def _fetch(dsn: str, query: sql.SQL | sql.Composed, values: list[Any]) -> list[tuple]:
    try:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cursor = await conn.execute(query, values)
            return await cursor.fetchall()
    except psycopg.Error as error:
        raise OdooError("psycopg2.Error", str(error).splitlines()[0]) from error


def _text(value: Any) -> str:
    # Odoo 16+ stores some names as jsonb translations: {"en_US": "..."}.
    if isinstance(value, dict):
        return str(value.get("en_US") or next(iter(value.values()), ""))
    return str(value)


def _odoo_value(field_name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")  # Odoo's UTC wire format
    if isinstance(value, Decimal):
        return float(value)
    if field_name == "name":
        return _text(value)
    return value


def _rpc_result(payload: dict, result: Any) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": payload.get("id"), "result": result})


def _rpc_error(payload: dict, error: OdooError) -> web.Response:
    body = {
        "jsonrpc": "2.0",
        "id": payload.get("id"),
        "error": {
            "code": 200,
            "message": "Odoo Server Error",
            "data": {"name": error.name, "message": error.message},
        },
    }
    return web.json_response(body)
