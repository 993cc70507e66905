"""What the page and Home Assistant ask of the persona: use another one, set one trait.

Both act at once, between turns or during one: the next turn's prompt uses the change. The
persona chosen is also written to `PERSONA` in the settings file, so it survives a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.errors import BillyError
from core.persona.store import PersonaStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonaRequest:
    """Use persona `name` (a folder or `.ini` name in the persona folder) from now on."""

    name: str


@dataclass(frozen=True)
class TraitRequest:
    """Set one trait of the persona in use."""

    trait: str
    """One of `core.persona.traits.TRAITS`."""
    value: int
    """0–100."""


def apply_persona_request(request: PersonaRequest | TraitRequest, store: PersonaStore, env_file: Path) -> None:
    """Carry out `request`; raises PersonaError (nothing changed) for an unknown persona or trait."""
    if isinstance(request, TraitRequest):
        store.update_traits({request.trait: request.value})
        return
    if store.name == request.name:
        return
    store.use(request.name)
    from core.envfile import file_values, update_env_file

    try:
        if file_values(env_file).get("PERSONA") != request.name:  # the page may have saved it already
            update_env_file(env_file, {"PERSONA": request.name})
    except (OSError, BillyError) as exc:
        log.warning("persona %s is in use until Billy restarts: cannot save it in %s (%s)", request.name, env_file, exc)
