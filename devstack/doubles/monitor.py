"""Azure Monitor alerts endpoint double, plus synthetic-check URLs whose answer is switchable.

`GET /subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts` answers the fired
alerts added with `fire()`, filtered by the `alertState` and `monitorCondition` query
parameters as Azure does; a bearer token is required. `GET /synthetic/{name}` answers the
status set with `set_synthetic()` (200 by default).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from devstack.doubles._server import HttpDouble


class AzureMonitorDouble(HttpDouble):
    def __init__(self, token: str = "test-token", subscription: str = "sub-1", port: int = 0):
        super().__init__(port)
        self.token = token
        self.subscription = subscription
        self.alerts: list[dict[str, Any]] = []
        self.synthetic_status: dict[str, int] = {}
        self.alert_queries: list[dict[str, str]] = []

    def fire(self, name: str, severity: str, state: str = "New", condition: str = "Fired") -> None:
        self.alerts.append(
            {
                "id": f"/subscriptions/{self.subscription}/providers/"
                f"Microsoft.AlertsManagement/alerts/{uuid.uuid4()}",
                "name": name,
                "type": "Microsoft.AlertsManagement/alerts",
                "properties": {
                    "essentials": {
                        "severity": severity,
                        "alertState": state,
                        "monitorCondition": condition,
                        "targetResource": f"/subscriptions/{self.subscription}/resourceGroups/odoo",
                    }
                },
            }
        )

    def set_synthetic(self, name: str, status: int) -> None:
        self.synthetic_status[name] = status

    def synthetic_url(self, name: str) -> str:
        return f"{self.url}/synthetic/{name}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get(
            "/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts", self._alerts
        )
        app.router.add_get("/synthetic/{name}", self._synthetic)

    async def _alerts(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": {"code": "InvalidAuthenticationToken"}}, status=401)
        if request.match_info["sub"] != self.subscription:
            return web.json_response({"error": {"code": "SubscriptionNotFound"}}, status=404)
        query = dict(request.query)
        self.alert_queries.append(query)
        selected = [
            alert
            for alert in self.alerts
            if alert["properties"]["essentials"]["alertState"] == query.get("alertState", "New")
            and alert["properties"]["essentials"]["monitorCondition"]
            == query.get("monitorCondition", "Fired")
        ]
        return web.json_response({"value": selected})

    async def _synthetic(self, request: web.Request) -> web.Response:
        status = self.synthetic_status.get(request.match_info["name"], 200)
        return web.json_response({"status": status}, status=status)
