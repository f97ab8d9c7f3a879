"""HTTP doubles of the services no real server can stand in for here (Azure DevOps, Azure
Monitor, webhooks, Odoo's JSON-RPC). Each starts on a free 127.0.0.1 port as an async
context manager; `python -m devstack.doubles` serves them all for the demo."""

from devstack.doubles.devops import AzureDevOpsDouble
from devstack.doubles.monitor import AzureMonitorDouble
from devstack.doubles.odoo import OdooDouble, OdooTenantDouble
from devstack.doubles.webhooks import WebhookReceiver

__all__ = [
    "AzureDevOpsDouble",
    "AzureMonitorDouble",
    "OdooDouble",
    "OdooTenantDouble",
    "WebhookReceiver",
]
