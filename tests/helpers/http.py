"""Running a test HTTP server on a thread of its own, for the length of a `with` block."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import HTTPServer
from typing import TypeVar

S = TypeVar("S", bound=HTTPServer)


@contextlib.contextmanager
def serving(server: S) -> Iterator[S]:
    """Serve until the block ends, then shut down, close the socket and join the thread."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def base_url(server: HTTPServer, path: str = "/v1") -> str:
    """The server's loopback URL with `path`."""
    return f"http://127.0.0.1:{server.server_address[1]}{path}"
