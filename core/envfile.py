"""The `.env` file written back (the page's settings, a persona choice): whole, with a backup.

Only the lines of the changed variables are rewritten, so comments and order survive. The
previous file is kept as `.env.bak`, the new one replaces it atomically, and a lock on the
folder keeps the voice process and the page from writing at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from dotenv import dotenv_values

from core.config import ROOT
from core.errors import BadSetting
from core.files import write_atomic

SECRETS = frozenset({"OPENAI_API_KEY", "MQTT_PASSWORD", "HA_TOKEN", "WEB_PASSWORD"})
"""Variables whose values never leave the machine: not in pages, responses or logs."""

_SAFE = re.compile(r"[A-Za-z0-9_\-.,/:@+%~]*")
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def file_values(env_file: Path) -> dict[str, str]:
    """What the settings file itself says (not the environment); a missing file says nothing."""
    if not Path(env_file).is_file():
        return {}
    return {k: v or "" for k, v in dotenv_values(env_file).items()}


def format_value(name: str, value: str) -> str:
    """`value` as python-dotenv reads it back unchanged; BadSetting for what one line cannot hold."""
    if any(c in value for c in "\n\r\0"):
        raise BadSetting(f"{name}: use a value on one line.")
    if "${" in value:
        raise BadSetting(f"{name}: a value cannot hold ${{ (python-dotenv would replace it with a variable).")
    if _SAFE.fullmatch(value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(text: str, changes: Mapping[str, str]) -> str:
    """`text` with each changed variable's line replaced (or appended), everything else as it was."""
    lines = text.splitlines()
    done = set()
    for i, line in enumerate(lines):
        match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match and match.group(1) in changes:
            name = match.group(1)
            lines[i] = f"{name}={format_value(name, changes[name])}"
            done.add(name)
    for name, value in changes.items():
        if name not in done:
            lines.append(f"{name}={format_value(name, value)}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_env_file(path: Path, changes: Mapping[str, str], template: Path = ROOT / ".env.example") -> None:
    """Set `changes` in the settings file at `path`, keeping the old file as `<name>.bak`.

    A missing file starts from `template` (the documented `.env.example`). New files are
    readable by their owner only, since they may hold secrets. Raises BadSetting for a name
    or value a `.env` line cannot hold, OSError when the folder cannot be written.
    """
    for name in changes:
        if not _NAME.fullmatch(name):
            raise BadSetting(f"{name!r} is not a setting name: use capitals, digits and _.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        if path.is_file():
            old = path.read_bytes()
            backup = path.with_name(path.name + ".bak")
            write_atomic(backup, old)
            os.chmod(backup, path.stat().st_mode & 0o777)
            text = old.decode("utf-8-sig")
        else:
            old = None
            text = template.read_text(encoding="utf-8") if template.is_file() else ""
        write_atomic(path, render(text, changes))
        if old is None:
            os.chmod(path, 0o600)
