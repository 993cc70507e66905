"""`python main.py web`: the page process, on its own (Billy starts it too, and watches it).

It holds the page lock (a second page exits at once), connects to Billy's channel (and keeps
trying while he is down), and serves the page with werkzeug's threaded server: one thread
per browser request, plus one per open live stream. SIGTERM or SIGINT end it cleanly.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

from core.config import Settings
from core.web.address import page_url
from core.web.app import PageContext, create_app
from core.web.channel import ChannelClient
from core.web.hub import Hub
from core.web.link import secrets_of
from core.web.processes import EXIT_PAGE_OFF, PAGE_LOCK, ProcessLock, start_voice
from core.web.protocol import SOCKET_NAME

log = logging.getLogger(__name__)

SECRET_KEY_FILE = "web-secret.key"


def secret_key(runtime_dir: Path) -> bytes:
    """The key that signs session cookies: made once, kept readable by this user only."""
    path = Path(runtime_dir) / SECRET_KEY_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        key = path.read_bytes().strip()
        if len(key) >= 64:
            os.chmod(path, 0o600)
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
    os.chmod(path, 0o600)
    return key


def run_page(settings: Settings) -> int:
    """Serve the page until SIGTERM/SIGINT; returns the exit code."""
    web = settings.web
    if not web.enabled:
        log.info("Billy's page is off (WEB_ENABLED=false)")
        return EXIT_PAGE_OFF
    lock = ProcessLock(web.runtime_dir, PAGE_LOCK)
    if not lock.acquire():
        log.info("Billy's page is already running (pid %s); not starting another", lock.holder())
        return 0
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request (the live stream polls)
    hub = Hub(web.runtime_dir, secrets_of(settings))
    channel = ChannelClient(web.runtime_dir / SOCKET_NAME, hub.on_event)
    restart = threading.Event()
    server = None

    def stop() -> None:
        if server is not None:
            threading.Thread(target=server.shutdown, name="page-stop", daemon=True).start()

    def restart_page() -> None:
        log.info("the page restarts to apply its new settings")
        restart.set()
        threading.Timer(1.0, stop).start()  # after the answer has left

    context = PageContext(
        settings,
        hub,
        channel,
        start_voice=lambda: start_voice(web.runtime_dir, settings.env_file),
        restart_page=restart_page,
    )
    app = create_app(context, secret_key(web.runtime_dir))
    try:
        server = make_server(web.host, web.port, app, threaded=True)
    except (OSError, SystemExit) as exc:
        log.error(
            "Billy's page cannot listen on %s:%d (%s): another program uses FLASK_PORT? Pick another port in .env.",
            web.host,
            web.port,
            exc,
        )
        lock.release()
        return 1
    server.daemon_threads = True
    channel.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())
    if web.password:
        log.info("Billy's page: %s (log in with WEB_PASSWORD)", page_url(web))
    else:
        log.info(
            "Billy's page: %s, on this machine only: set WEB_PASSWORD in %s to open it to your network",
            page_url(web),
            settings.env_file.name,
        )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        channel.close()
        server.server_close()
        lock.release()
    if restart.is_set():
        os.execv(sys.executable, [sys.executable, *sys.argv])
    return 0
