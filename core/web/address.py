"""Where Billy's page can be reached: for the start-up log and Home Assistant's "Visit" link."""

from __future__ import annotations

import contextlib
import socket

from core.config import WebSettings


def lan_address() -> str:
    """This machine's address on its network (no packet is sent), or its host name."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET: only picks the outgoing interface
        address = probe.getsockname()[0]
        if address and not address.startswith("0."):
            return address
    return socket.gethostname()


def page_url(settings: WebSettings) -> str:
    """The page's address: on the network behind a password, else on this machine only."""
    host = lan_address() if settings.password else "127.0.0.1"
    return f"http://{host}:{settings.port}/"
