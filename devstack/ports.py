"""Free local ports, so two test runs on one machine never collide.

Ports come from below the kernel's ephemeral range (32768-60999 on Linux): servers we start
bind port 0 for their own internal listeners (the Temporal dev server does), and a port
picked there could be taken between our choosing it and our service binding it.
"""

from __future__ import annotations

import random
import socket

_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nobody listens on now, never handed out twice by this process."""
    for _ in range(200):
        port = random.randrange(*_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_RANGE[0]}-{_RANGE[1]} after 200 tries")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
