"""One end-to-end stack for every e2e module (starting it costs half a minute).

Tests run one after another on it: each starts its own release on freshly seeded tenants,
and a test that kills a worker starts it again before it ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack, running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("e2e-stack"), pg_admin_dsn) as started:
        yield started
