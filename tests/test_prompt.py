"""The system prompt built from a persona: one rule per trait level, facts, tools, spoken style."""

from __future__ import annotations

from dataclasses import replace

from core.config import ROOT
from core.persona.ini import load_persona
from core.persona.traits import LEVELS, TRAITS
from core.talk.prompt import TRAIT_RULES, build_system_prompt

BILLY = load_persona(ROOT / "personas" / "billy" / "persona.ini")


def test_every_trait_has_a_distinct_rule_for_every_level():
    assert set(TRAIT_RULES) == set(TRAITS)
    for trait, rules in TRAIT_RULES.items():
        assert list(rules) == list(LEVELS), trait
        assert len(set(rules.values())) == len(LEVELS), trait


def test_the_prompt_holds_the_rule_of_each_trait_level_and_nothing_of_other_levels():
    prompt = build_system_prompt(BILLY, [])
    for trait in TRAITS:
        own = BILLY.level(trait)
        assert TRAIT_RULES[trait][own] in prompt
        for other in LEVELS:
            if other != own:
                assert TRAIT_RULES[trait][other] not in prompt


def test_a_trait_change_changes_behaviour_rules():
    humorless = replace(BILLY, traits={**BILLY.traits, "humor": 0})
    assert TRAIT_RULES["humor"]["min"] in build_system_prompt(humorless, [])
    assert TRAIT_RULES["humor"]["min"] not in build_system_prompt(BILLY, [])


def test_facts_instructions_songs_tools_and_spoken_style_are_there():
    prompt = build_system_prompt(BILLY, ["River Song", "Fishsticks"])
    assert BILLY.instructions in prompt
    assert "above the toaster" in prompt  # a backstory fact
    assert "Installed songs: Fishsticks, River Song." in prompt
    for tool in ("update_personality", "play_song", "smart_home_command", "end_conversation"):
        assert tool in prompt
    assert "markdown" in prompt and "one to three sentences" in prompt


def test_only_the_tools_offered_are_explained():
    prompt = build_system_prompt(BILLY, [], tools=["update_personality", "play_song", "end_conversation"])
    assert "smart_home_command" not in prompt
    assert "Installed songs: none." in prompt


def test_the_prompt_is_byte_identical_for_the_same_inputs():
    assert build_system_prompt(BILLY, ["b", "a"]) == build_system_prompt(load_persona(BILLY.source), ["a", "b"])
