"""Odoo JSON-RPC double answered from each tenant's real Odoo-shaped PostgreSQL database.

Per tenant, under `/<tenant>`: `GET /web/health`, `POST /web/session/authenticate`
(checks the configured login and password, sets a `session_id` cookie) and
`POST /web/dataset/call_kw` for `read_group` on `account.move.line` (grouped by account)
and `search_read` on `ir.cron` — the SQL runs on the tenant's database, so the numbers the
smoke checks compare are the real ones.
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
_CRON_FIELDS = ("id", "name", "active", "nextcall", "interval_number", "interval_type")


@dataclass(frozen=True)
class OdooTenantDouble:
    dsn: str
    login: str = "smoke"
    password: str = "smoke"


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
        if model == "ir.cron" and method == "search_read":
            return await self._search_read_cron(tenant, kwargs)
        raise OdooError("odoo.exceptions.UserError", f"double does not implement {model}.{method}")

    async def _read_group_by_account(self, tenant: OdooTenantDouble, kwargs: dict) -> list[dict]:
        groupby = kwargs.get("groupby") or []
        if list(groupby) != ["account_id"]:
            raise OdooError("odoo.exceptions.UserError", "double groups only by account_id")
        where = _where(kwargs.get("domain", []), alias="l")
        query = sql.SQL(
            "SELECT a.id, a.code, a.name, count(*), sum(l.debit), sum(l.credit), sum(l.balance)"
            " FROM account_move_line l JOIN account_account a ON a.id = l.account_id"
            " WHERE {} GROUP BY a.id, a.code, a.name ORDER BY a.code"
        ).format(where[0])
        rows = await _fetch(tenant.dsn, query, where[1])
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
        fields = [f for f in kwargs.get("fields") or _CRON_FIELDS if f in _CRON_FIELDS]
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


async def _fetch(dsn: str, query: sql.Composed, values: list[Any]) -> list[tuple]:
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
