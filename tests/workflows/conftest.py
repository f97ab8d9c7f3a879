"""Make `workflows` mean the project package, not this test folder of the same name.

pytest puts `tests/` on sys.path (rootdir conftest, no `__init__.py`), so `import workflows`
would find this folder as a namespace package before the editable install's finder.
Putting the repository root first makes the real package win (a regular package beats a
namespace portion). Better: `pythonpath = ["."]` in pyproject's pytest options.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
_loaded = sys.modules.get("workflows")
if _loaded is not None and getattr(_loaded, "__file__", None) is None:
    del sys.modules["workflows"]  # the namespace stand-in; re-import the real package
