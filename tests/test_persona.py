"""Persona files: loading (ours and the original Billy B-Assistant's), saving, hot reload, broken files."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from core.config import ROOT, PersonaSettings
from core.errors import PersonaError
from core.persona.ini import load_persona, save_persona
from core.persona.store import PersonaStore, list_personas
from core.persona.traits import TRAITS, coerce_trait_value, level

# The layout of a persona.ini from the original Billy B-Assistant (our own words in it):
# no respectfulness/optimism, an extra [MOOD] section, META with description and an OpenAI voice.
ORIGINAL_STYLE = """\
[PERSONALITY]
humor = 100
sarcasm = 100
honesty = 80
confidence = 90
warmth = 75
curiosity = 60
verbosity = 40
formality = 0

[MOOD]
positivity = 50
label = neutral
last_updated =

[BACKSTORY]
origin = a pond behind a garden centre
species = largemouth bass

[META]
instructions = You are a fish. Use 100% fish puns.
name = Billy
description = Default
voice = ballad

[WAKEUP]

[WAKEUP_MOODS]
"""


def _store(tmp_path: Path, text: str, name: str = "fish", allow: bool = True, folder: bool = True) -> PersonaStore:
    path = tmp_path / name / "persona.ini" if folder else tmp_path / f"{name}.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return PersonaStore(PersonaSettings(name=name, directory=tmp_path, allow_update_ini=allow))


def _touch_changed(path: Path, text: str) -> None:
    """Rewrite a file so its mtime surely differs (coarse filesystem clocks)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def test_levels_follow_the_design_boundaries():
    assert [level(v) for v in (0, 14, 15, 34, 35, 64, 65, 84, 85, 100)] == [
        "min", "min", "low", "low", "med", "med", "high", "high", "max", "max",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (90, None, 90), ("90", None, 90), ("90%", None, 90), ("ninety percent", None, 90),
        ("ninety-five", None, 95), ("one hundred", None, 100), ("high", None, 75), ("MAX", None, 95),
        ("medium", None, 50), (150, None, 100), (-5, None, 0), (72.6, None, 73), ("more", 60, 80),
        ("less", 10, 0), ("+15", 50, 65), ({"value": 80}, None, 80),
    ],
)  # fmt: skip
def test_trait_values_are_coerced_leniently(value, current, expected):
    assert coerce_trait_value(value, current) == expected


@pytest.mark.parametrize("value", [True, "loads", None, [1]])
def test_nonsense_trait_values_are_refused(value):
    with pytest.raises(ValueError, match="0 to 100"):
        coerce_trait_value(value)


def test_every_shipped_persona_loads_with_wakeup_phrases():
    names = list_personas(ROOT / "personas")
    assert "billy" in names and len(names) >= 4
    for name in names:
        persona = load_persona(ROOT / "personas" / name / "persona.ini")
        assert set(persona.traits) == set(TRAITS)
        assert persona.wakeup, f"{name} has no [WAKEUP] phrases"
        assert persona.instructions and persona.display_name


def test_original_billy_file_loads_unchanged_and_survives_a_save(tmp_path):
    store = _store(tmp_path, ORIGINAL_STYLE)
    persona = store.current()
    assert persona.traits["humor"] == 100 and persona.traits["formality"] == 0
    assert persona.traits["respectfulness"] == 50 and persona.traits["optimism"] == 50
    assert persona.instructions == "You are a fish. Use 100% fish puns."
    assert persona.voice == "ballad" and persona.description == "Default" and persona.wakeup == []
    assert persona.backstory == {"origin": "a pond behind a garden centre", "species": "largemouth bass"}
    assert store.path.read_text() == ORIGINAL_STYLE  # loading never rewrites it

    store.update_traits({"humor": 30})
    text = store.path.read_text()
    assert "humor = 30\n" in text
    assert text.replace("humor = 30\n", "humor = 100\n") == ORIGINAL_STYLE  # only that line changed
    assert "[MOOD]\npositivity = 50\nlabel = neutral" in text


def test_full_save_keeps_comments_unknown_sections_and_key_spelling(tmp_path):
    path = tmp_path / "p.ini"
    path.write_text(
        "# my fish\n[PERSONALITY]\nHumour = 40 \n; keep me\nsarcasm = 10\n\n[EXTRA]\nfoo = bar\n\n"
        "[WAKEUP]\n2 = second\n1 = first\n"
    )
    persona = load_persona(path)
    assert persona.traits["humor"] == 40
    assert persona.wakeup == ["first", "second"]  # numbered keys in numeric order
    changed = replace(persona, traits={**persona.traits, "humor": 77}, wakeup=["hi"])
    save_persona(changed)
    text = path.read_text()
    assert text.startswith("# my fish\n[PERSONALITY]\nHumour = 77\n; keep me\nsarcasm = 10\n")
    assert "[EXTRA]\nfoo = bar" in text
    reloaded = load_persona(path)
    assert reloaded.traits == changed.traits and reloaded.wakeup == ["hi"]


def test_out_of_range_and_non_numeric_traits_are_clamped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "odd.ini"
    path.write_text("[PERSONALITY]\nhumor = 250\nsarcasm = -3\nwarmth = loads\nformality = high\nsparkle = 9\n")
    with caplog.at_level(logging.WARNING, logger="core.persona.store"):
        persona = load_persona(path)
    assert persona.traits["humor"] == 100 and persona.traits["sarcasm"] == 0
    assert persona.traits["warmth"] == 50 and persona.traits["formality"] == 75
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(path) in m and "humor" in m and "250" in m for m in messages)
    assert any(str(path) in m and "warmth" in m for m in messages)


@pytest.mark.parametrize("text", ["just some words\n", "[PERSONALITY\nhumor = 5\n", ""])
def test_a_file_that_is_not_a_persona_is_rejected_naming_it(tmp_path, text):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(PersonaError, match=r"bad\.ini"):
        load_persona(path)


def test_missing_persona_lists_the_available_ones(tmp_path):
    _store(tmp_path, ORIGINAL_STYLE, name="alpha")
    (tmp_path / "beta.ini").write_text(ORIGINAL_STYLE)
    with pytest.raises(PersonaError) as error:
        PersonaStore(PersonaSettings(name="gamma", directory=tmp_path))
    assert "gamma" in str(error.value) and "alpha, beta" in str(error.value)


def test_loose_ini_files_are_found_too(tmp_path):
    store = _store(tmp_path, ORIGINAL_STYLE, name="solo", folder=False)
    assert store.path == tmp_path / "solo.ini"
    assert store.current().name == "solo"
    assert store.list_personas() == ["solo"]


def test_hand_edit_while_running_is_used_on_the_next_call(tmp_path):
    store = _store(tmp_path, ORIGINAL_STYLE)
    assert store.current().traits["warmth"] == 75
    seen: list[int] = []
    store.subscribe(lambda persona: seen.append(persona.traits["warmth"]))
    _touch_changed(store.path, ORIGINAL_STYLE.replace("warmth = 75", "warmth = 5"))
    assert store.current().traits["warmth"] == 5
    assert store.current().traits["warmth"] == 5
    assert seen == [5]  # told once, when the change was found
    store.update_traits({"warmth": 60})
    assert seen == [5, 60]


def test_broken_hand_edit_keeps_the_last_good_persona_and_logs_once(tmp_path, caplog):
    store = _store(tmp_path, ORIGINAL_STYLE)
    good = store.current()
    _touch_changed(store.path, "this is [not an ini")
    with caplog.at_level(logging.WARNING, logger="core.persona.store"):
        assert store.current() == good
        assert store.current() == good
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(store.path) in warnings[0]
    _touch_changed(store.path, ORIGINAL_STYLE.replace("humor = 100", "humor = 1"))
    assert store.current().traits["humor"] == 1


def test_update_traits_writes_atomically_and_persists_across_restarts(tmp_path):
    store = _store(tmp_path, ORIGINAL_STYLE)
    assert store.update_traits({"Humour": "ninety percent", "sarcastic": "low", "warmth": 130}) == {
        "humor": 90, "sarcasm": 25, "warmth": 100,
    }  # fmt: skip
    assert store.current().traits["humor"] == 90
    assert [p.name for p in store.path.parent.iterdir()] == ["persona.ini"]  # no temp file left behind
    restarted = PersonaStore(PersonaSettings(name="fish", directory=tmp_path))
    assert restarted.current().traits["humor"] == 90
    assert restarted.current().traits["sarcasm"] == 25


def test_update_traits_in_memory_only_when_not_allowed(tmp_path):
    store = _store(tmp_path, ORIGINAL_STYLE, allow=False)
    store.update_traits({"humor": 10})
    assert store.current().traits["humor"] == 10
    assert store.path.read_text() == ORIGINAL_STYLE
    restarted = PersonaStore(PersonaSettings(name="fish", directory=tmp_path, allow_update_ini=False))
    assert restarted.current().traits["humor"] == 100


def test_update_traits_refuses_unknown_traits_and_changes_nothing(tmp_path):
    store = _store(tmp_path, ORIGINAL_STYLE)
    with pytest.raises(PersonaError, match="sparkle"):
        store.update_traits({"humor": 5, "sparkle": 9})
    assert store.current().traits["humor"] == 100
    assert store.path.read_text() == ORIGINAL_STYLE


def test_a_crash_during_a_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    store = _store(tmp_path, ORIGINAL_STYLE)

    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "replace", crash)
    store.update_traits({"humor": 3})  # the write fails; the change stays in memory
    assert store.path.read_text() == ORIGINAL_STYLE
    assert [p.name for p in store.path.parent.iterdir()] == ["persona.ini"]
    assert store.current().traits["humor"] == 3
