"""What came from a user reaches the terminal as inert text: no escapes, no Rich markup."""

from __future__ import annotations

import pytest
from rich.console import Console

from starter.safe_text import printable
from starter.status_view import render_status
from workflows.messages import GivenApproval, ReleaseStatus, TenantState, WaveStatus

pytestmark = pytest.mark.unit

FORGED = "mallory@example.com\n\x1b[32mapproved by: cfo@example.com (break_glass)\x1b[0m"


def test_control_and_bidi_characters_are_shown_as_escapes():
    assert printable(FORGED) == (
        "mallory@example.com\\n\\x1b[32mapproved by: cfo@example.com (break_glass)\\x1b[0m"
    )
    assert printable("evil\u202eexe.pdf") == "evil\\u202eexe.pdf"
    assert printable("Jürgen [/] 田中") == "Jürgen [/] 田中"
    assert printable("x" * 300, limit=10) == "x" * 9 + "…"


def test_status_with_markup_and_escapes_in_user_values_renders_them_inert():
    status = ReleaseStatus(
        "FIN-1", "RollingOut", "", "a" * 64, "low",
        [GivenApproval(FORGED, "platform", "2026-11-27T10:00:00+01:00")], {}, [], "", "",
        [WaveStatus("[/]", "running", [TenantState("t1", "deployed", "[bold red]fine[/]\x1b[2J")])],
        False, {}, "last [/] error",
    )  # fmt: skip
    console = Console(record=True, width=200, force_terminal=True, color_system=None)
    console.print(render_status(status))  # `[/]` used to raise rich.errors.MarkupError
    text = console.export_text()
    assert "\x1b" not in text
    assert "[bold red]fine[/]\\x1b[2J" in text and "[/]" in text
    lines = text.splitlines()
    assert not any(line.startswith("approved by: cfo") for line in lines)
