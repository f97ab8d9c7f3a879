"""A stand-in for Odoo users: a thread posting balanced journal entries as the Odoo role.

It keeps one connection like an Odoo worker does, reconnects when it is cut or refused, and
remembers exactly which entries were committed and how many attempts were refused.
"""

from __future__ import annotations

import threading
import time

import psycopg


class Poster:
    def __init__(self, dsn: str, prefix: str = "POST/2026/", pause: float = 0.02) -> None:
        self._dsn = dsn
        self._prefix = prefix
        self._pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.committed: list[str] = []
        self.refusals: list[str] = []

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_for(self, committed: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.committed) < committed:
            assert time.monotonic() < deadline, f"poster committed only {len(self.committed)}"
            time.sleep(0.01)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._dsn, connect_timeout=2)
                self._post(conn, len(self.committed) + 1)
            except psycopg.Error as error:
                # refused (no CONNECT) or cut (terminated): what an Odoo worker would see
                self.refusals.append(type(error).__name__ + ": " + str(error).splitlines()[0])
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(self._pause)
        if conn is not None:
            conn.close()

    def _post(self, conn: psycopg.Connection, number: int) -> None:
        name = f"{self._prefix}{number:05d}"
        with conn.transaction():
            move = conn.execute(
                """
                INSERT INTO account_move (name, journal_id, company_id, currency_id, date, state,
                                          move_type, sequence_prefix, sequence_number)
                VALUES (%s, 1, 1, 1, '2026-01-05', 'posted', 'entry', %s, %s) RETURNING id
                """,
                (name, self._prefix, number),
            ).fetchone()
            assert move is not None
            for account, debit, credit in ((3, 50, 0), (7, 0, 50)):
                conn.execute(
                    """
                    INSERT INTO account_move_line (move_id, account_id, company_id, journal_id,
                                                   currency_id, display_type, name, date,
                                                   parent_state, debit, credit, balance)
                    VALUES (%s, %s, 1, 1, 1, 'product', 'poster', '2026-01-05', 'posted',
                            %s, %s, %s)
                    """,
                    (move[0], account, debit, credit, debit - credit),
                )
        self.committed.append(name)  # only after COMMIT returned
