"""Billy's sentence templates against the sentences that must (and must not) match them.

Each file in tests/intents/en/ belongs to the template file of the same name in intents/en/:
a new phrasing is a line of data there plus a line here. Matching is real: hassil on the
project's own templates, with the installed songs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.body.songs import SongLibrary
from core.config import ROOT
from core.persona.traits import TRAITS
from core.talk.intents import ADVICE, HOME, NOT_TEMPLATES, SentenceTemplates

CASES = Path(__file__).parent / "intents" / "en"
NEUTRAL = dict.fromkeys(TRAITS, 50)
EXPECTED_INTENT = {"personality": "update_personality", "songs": "play_song", "goodbye": "end_conversation"}
PLAIN_INTENT = {"advice": ADVICE, "home": HOME}


@pytest.fixture(scope="module")
def templates() -> SentenceTemplates:
    return SentenceTemplates("en")


@pytest.fixture(scope="module")
def songs() -> SongLibrary:
    return SongLibrary(ROOT / "sounds" / "songs")


def _cases(kind: str) -> list[tuple[str, str, dict | None]]:
    cases = []
    for path in sorted(CASES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if kind == "match":
            cases += [(path.stem, case["say"], case.get("args")) for case in data.get("match", [])]
        else:
            cases += [(path.stem, say, None) for say in data.get("no_match", [])]
    return cases


def test_every_template_file_has_its_test_sentences() -> None:
    files = {p.name for p in (ROOT / "intents" / "en").glob("*.yaml")} - NOT_TEMPLATES - {"_common.yaml"}
    templates = {name.removesuffix(".yaml") for name in files}
    assert templates == {p.stem for p in CASES.glob("*.yaml")}


@pytest.mark.parametrize(("file", "say", "args"), _cases("match"), ids=lambda v: v if isinstance(v, str) else "")
def test_sentence_matches(templates, songs, file: str, say: str, args: dict | None) -> None:
    found = templates.recognize(say, NEUTRAL, songs)
    assert found is not None, say
    if file in EXPECTED_INTENT:
        assert found.tool == EXPECTED_INTENT[file], found
        assert found.arguments == (args or {}), found
    else:
        assert found.intent == PLAIN_INTENT[file] and found.tool is None, found


@pytest.mark.parametrize(("file", "say", "args"), _cases("no_match"), ids=lambda v: v if isinstance(v, str) else "")
def test_sentence_does_not_match(templates, songs, file: str, say: str, args: None) -> None:
    found = templates.recognize(say, NEUTRAL, songs)
    if file in EXPECTED_INTENT:
        assert found is None or found.tool != EXPECTED_INTENT[file], found
    else:
        assert found is None or found.intent != PLAIN_INTENT[file], found


def test_relative_changes_start_from_the_current_value(templates) -> None:
    traits = {**NEUTRAL, "sarcasm": 90, "humor": 5}
    assert templates.recognize("be a lot more sarcastic", traits).arguments == {"sarcasm": 100}
    assert templates.recognize("be less funny", traits).arguments == {"humor": 0}


def test_a_song_that_is_not_installed_is_not_a_song_command(templates, songs) -> None:
    assert templates.recognize("play stairway to heaven", NEUTRAL, songs) is None
    assert templates.recognize("play stairway to heaven", NEUTRAL, None) is None
