"""Serve every HTTP double for the demo until interrupted.

    python -m devstack.doubles --devops-port 8701 --monitor-port 8702 --webhooks-port 8703 \
        --odoo-port 8069 --odoo-tenant acme=postgresql://postgres@127.0.0.1:5432/acme \
        --work-item 4711

Secrets for the doubles (PAT, smoke password, Monitor token) come from the environment:
AZURE_DEVOPS_PAT, FINRELEASE_DOUBLES_SMOKE_PASSWORD, FINRELEASE_DOUBLES_MONITOR_TOKEN
(demo defaults otherwise). A DSN given with --odoo-tenant stays on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

from devstack.doubles.devops import AzureDevOpsDouble
from devstack.doubles.monitor import AzureMonitorDouble
from devstack.doubles.odoo import OdooDouble, OdooTenantDouble
from devstack.doubles.webhooks import WebhookReceiver

DEMO_WORK_ITEM_FIELDS = {
    "System.Title": "Finance release (demo change request)",
    "System.WorkItemType": "Change Request",
    "System.State": "Approved",
    "Custom.BusinessJustification": "Demo: correct tax tags before the month-end close",
    "Microsoft.VSTS.Common.Risk": "2 - Medium",
}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.doubles", description=__doc__)
    parser.add_argument("--devops-port", type=int, default=0)
    parser.add_argument("--monitor-port", type=int, default=0)
    parser.add_argument("--webhooks-port", type=int, default=0)
    parser.add_argument("--odoo-port", type=int, default=0)
    parser.add_argument("--odoo-tenant", action="append", default=[], metavar="NAME=DSN")
    parser.add_argument("--work-item", type=int, action="append", default=[])
    parser.add_argument("--org", default="contoso")
    parser.add_argument("--project", default="Finance")
    parser.add_argument("--subscription", default="sub-demo")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    environ = os.environ
    devops = AzureDevOpsDouble(
        pat=environ.get("AZURE_DEVOPS_PAT", "demo-pat"),
        org=args.org,
        project=args.project,
        port=args.devops_port,
    )
    for work_item in args.work_item:
        devops.add_work_item(work_item, DEMO_WORK_ITEM_FIELDS)
    monitor = AzureMonitorDouble(
        token=environ.get("FINRELEASE_DOUBLES_MONITOR_TOKEN", "demo-token"),
        subscription=args.subscription,
        port=args.monitor_port,
    )
    password = environ.get("FINRELEASE_DOUBLES_SMOKE_PASSWORD", "smoke")
    tenants = {}
    for item in args.odoo_tenant:
        name, _, dsn = item.partition("=")
        tenants[name] = OdooTenantDouble(dsn=dsn, login="smoke", password=password)
    odoo = OdooDouble(tenants, port=args.odoo_port)
    hooks = WebhookReceiver(port=args.webhooks_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with devops, monitor, hooks, odoo:
        print(f"azure devops  {devops.org_url} (project {args.project})", flush=True)
        print(f"azure monitor {monitor.url} (subscription {args.subscription})", flush=True)
        print(f"webhooks      {hooks.url}/hooks/<name>", flush=True)
        for name in tenants:
            print(f"odoo          {odoo.tenant_url(name)}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(_arguments(argv)))


if __name__ == "__main__":
    main()
