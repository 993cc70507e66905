"""Every `.env` variable as the settings page shows it, and a candidate checked like at start-up.

The groups, explanations and defaults come from `.env.example`, the one place they are
written; the check is `core.config.load_settings` itself on the candidate values, so the
page refuses exactly what start-up would refuse, with the same sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.body.motors import PIN_NAMES
from core.config import ROOT, load_settings
from core.envfile import SECRETS
from core.errors import BillyError

LIVE = frozenset({"PERSONA"})
"""Applied at once, without a restart."""
PAGE = frozenset({"FLASK_PORT", "WEB_PASSWORD", "WEB_ENABLED"})
"""The page restarts itself to apply these; Billy does not need to."""
MAX_VALUE_CHARS = 1000


@dataclass(frozen=True)
class Field:
    name: str
    help: str
    default: str
    """What applies when the value is empty (from the `[...]` in the explanation)."""

    @property
    def secret(self) -> bool:
        return self.name in SECRETS

    @property
    def applies(self) -> str:
        """`live`, `page` (the page restarts itself) or `restart` (Billy must restart)."""
        return "live" if self.name in LIVE else "page" if self.name in PAGE else "restart"


@dataclass(frozen=True)
class Group:
    title: str
    fields: tuple[Field, ...]


def _pin_fields() -> list[Field]:
    return [
        Field(
            f"BILLY_PIN_{pin.upper()}",
            f"GPIO (BCM 0-27) of the {pin.replace('_b', '')} "
            + ("bridge's other input, if it is not tied to ground" if pin.endswith("_b") else "pin")
            + "; empty: the layout's.",
            "",
        )
        for pin in PIN_NAMES
    ]


def read_schema(example: Path = ROOT / ".env.example") -> list[Group]:
    """The groups of `.env.example`, each variable with the comment above it."""
    groups: list[tuple[str, list[Field]]] = []
    help_lines: list[str] = []
    last_help = ""
    for raw in example.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        heading = re.match(r"#\s*---\s*(.+?)\s*-*$", line)
        if heading:
            groups.append((heading.group(1).strip(" -"), []))
            help_lines, last_help = [], ""
        elif line.startswith("#"):
            text = line.lstrip("#").strip()
            if not text.startswith(("Override single pins", 'Names: see README "Wiring"')):
                help_lines.append(text)
        elif match := re.match(r"([A-Z][A-Z0-9_]*)=", line):
            if help_lines:
                last_help = " ".join(help_lines)
            help_lines = []
            default = re.search(r"\[([^\]]*)\]\s*$", last_help)
            if not groups:
                groups.append(("settings", []))
            groups[-1][1].append(Field(match.group(1), last_help, default.group(1) if default else ""))
        else:
            help_lines, last_help = [], ""
    if groups:
        groups[0][1].extend(_pin_fields())  # "the fish": documented in one comment, read by prefix
    return [Group(title, tuple(fields)) for title, fields in groups]


def field_names(schema: list[Group]) -> dict[str, Field]:
    return {f.name: f for group in schema for f in group.fields}


def check(values: Mapping[str, str], persona_names: list[str] | None = None) -> dict[str, str]:
    """Each variable that start-up would refuse, with its sentence; empty when all are fine.

    `load_settings` stops at the first bad value, so each one found is put back to empty
    and the check runs again, to show every bad field at once.
    """
    from core.persona.store import list_personas

    candidate = dict(values)
    errors: dict[str, str] = {}
    for _ in range(len(candidate) + 1):
        try:
            settings = load_settings(ROOT / ".env.absent-on-purpose", candidate)
        except BillyError as exc:
            message = str(exc)
            match = re.match(r"([A-Z][A-Z0-9_]*)[=: ]", message)
            name = match.group(1) if match and match.group(1) in candidate else ""
            errors[name or "_"] = message
            if not name:
                break
            candidate[name] = ""
            continue
        names = list_personas(settings.persona.directory) if persona_names is None else persona_names
        if candidate.get("PERSONA") and settings.persona.name not in names:
            errors["PERSONA"] = (
                f"PERSONA={settings.persona.name!r} is not allowed: no such persona; available: {', '.join(names)}."
            )
        break
    return errors


def describe(schema: list[Group], values: Mapping[str, str], environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """The settings page's JSON: every field with its value, secrets as "set or not" only."""
    groups = []
    for group in schema:
        fields = []
        for f in group.fields:
            value = values.get(f.name, "")
            fields.append(
                {
                    "name": f.name,
                    "help": f.help,
                    "default": f.default,
                    "secret": f.secret,
                    "value": "" if f.secret else value,
                    "is_set": bool(value),
                    "applies": f.applies,
                    "overridden": bool(environ.get(f.name)),
                }
            )
        groups.append({"title": group.title, "fields": fields})
    return groups


def candidate_from(
    form: Mapping[str, Any], clear: list[str], current: Mapping[str, str], known: Mapping[str, Field]
) -> tuple[dict[str, str], dict[str, str]]:
    """(all values after the change, only the changed ones) from the page's form.

    An empty secret means "keep it"; a secret is emptied only when named in `clear`.
    Raises ValueError with one sentence for an unknown name or a value that is not text.
    """
    values = {k: v for k, v in current.items()}
    changed: dict[str, str] = {}
    for name in [*form, *clear]:
        if name not in known:
            raise ValueError(f"{str(name)[:40]!r} is not a setting.")
    for name, value in form.items():
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"{name}: send text of up to {MAX_VALUE_CHARS} characters.")
        value = value.strip()
        if known[name].secret and not value:
            continue
        if value != current.get(name, ""):
            changed[name] = value
    for name in clear:
        if known[name].secret and current.get(name):
            changed[name] = ""
    values.update(changed)
    return values, changed
