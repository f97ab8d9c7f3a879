"""User text made safe for a terminal: what a name, comment or reason holds is shown, never
obeyed.

An approver name with a newline and ANSI escapes forged "approved by" lines in
`finrelease status`; `[/]` in a name crashed `finrelease list` for everyone, because Rich
read it as markup. So every value that came from a user goes through `printable` (control,
format and separator characters shown as escapes: `\\x1b`, `\\n`, `\\u202e`) and reaches
Rich as a `Text`, which Rich never parses for markup.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

_UNSAFE = ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp")


def printable(value: object, limit: int | None = None) -> str:
    """`value` as one line of inert text, cut to `limit` characters (with "…") when given."""
    text = "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _UNSAFE
        else char
        for char in str(value)
    )
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def cell(value: object, style: str = "", limit: int | None = None) -> Text:
    """A table cell or line for Rich: printable, and never read as markup."""
    return Text(printable(value, limit), style=style)
