"""The tool evaluation: its matchers, its cases, its simulated Home Assistant, its scoring and its run."""

from __future__ import annotations

import asyncio
import json

import pytest

from core.config import HomeAssistantSettings, Settings
from core.dev.evalrun import SONGS, EvalBench, run_eval
from core.dev.home_sim import SimulatedHome, SimulatedHomeAssistant
from core.dev.tooleval import (
    NO_TOOL,
    TOOLS,
    EvalCase,
    EvalReport,
    Observed,
    load_cases,
    matches,
    score,
)
from core.errors import BackendError
from core.home.homeassistant import HomeAssistantClient
from core.interfaces import BrainDone, TextDelta, ToolCall
from core.persona.traits import TRAITS
from tests.helpers.fakes import ScriptedBrain, reply


def _run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- matchers -------------------------------------------------------------------------


def test_matchers():
    assert matches(90, 90) and not matches(90, 91)
    assert matches("Fish Sticks", " fish sticks") and not matches("Fish Sticks", "Reef Shuffle")
    assert matches({"min": 85}, 90) and not matches({"min": 85}, 80) and not matches({"min": 85}, None)
    assert matches({"min": 15, "max": 34}, 25) and not matches({"max": 14}, 15)
    assert not matches({"min": 0}, True)  # a bool is not a number
    assert matches({"contains": ["kitchen", "LIGHT"]}, "Turn on the Kitchen light") and not matches(
        {"contains": ["garage"]}, "open the door"
    )
    assert not matches({"contains": ["none"]}, None)
    assert matches({"any": True}, "") and not matches({"any": True}, None)
    assert matches({"more": True}, 80, 60) and not matches({"more": True}, 60, 60)
    assert matches({"less": True}, 40, 60) and not matches({"less": True}, None, 60)


# --- the cases ------------------------------------------------------------------------


def test_the_case_file_is_valid_and_covers_every_tool():
    cases = load_cases()
    assert len(cases) >= 120
    tools = [c.tool for c in cases]
    for tool in TOOLS:
        assert tools.count(tool) >= 10, tool
    assert tools.count(None) >= 40
    assert len({c.say.lower() for c in cases}) == len(cases), "a case is listed twice"
    for case in cases:
        if case.tool == "update_personality":
            assert case.args and set(case.args) <= set(TRAITS), case.say
        if case.tool == "play_song":
            song = case.args["song"]
            assert song == {"any": True} or song in {t for t, _ in SONGS.values()} | {"Reef Shuffle"}, case.say
        if case.home:
            assert case.tool == "smart_home_command" and set(case.home) <= set(SimulatedHome().states()), case.say
    changed = {t for c in cases if c.tool == "update_personality" for t in c.args}
    assert changed == set(TRAITS), "every trait is asked for"


def test_a_bad_case_line_names_its_line(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text('# a section\n{"say": "hi", "tool": null}\n{"say": "sing", "tool": "dance"}\n')
    with pytest.raises(ValueError, match=r"cases.jsonl:3 .*'dance' is not a tool"):
        load_cases(path)
    path.write_text('{"say": "hi", "tool": null, "arguments": {}}\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_cases(path)


# --- the simulated Home Assistant, through Billy's real client --------------------------


def test_the_simulated_home_assistant_answers_like_home_assistant():
    with SimulatedHomeAssistant(token="tok") as ha:
        client = HomeAssistantClient(HomeAssistantSettings(host=ha.url, token="tok", timeout_seconds=5))

        async def talk():
            return [
                await client.ask(text)
                for text in (
                    "Lock the back door.",
                    "is the back door locked?",
                    "Is the kitchen light on?",
                    "What's the temperature in the living room?",
                    "set the thermostat to 22 degrees",
                    "turn on the sprinklers",
                    "How are you today?",
                )
            ]

        lock, locked, light, temperature, thermostat, sprinklers, chat = _run(talk())
        assert (lock.kind, lock.speech) == ("action_done", "Locking")
        assert ha.home.state("lock.back_door") == "locked"
        assert (locked.kind, locked.speech) == ("query_answer", "Yes")
        assert (light.kind, light.speech) == ("query_answer", "No, off")
        assert temperature.speech == "20.5 degrees"
        assert thermostat.speech == "Temperature set to 22 degrees"
        assert ha.home.entities["climate.thermostat"].attributes["temperature"] == 22
        assert (sprinklers.kind, sprinklers.code) == ("error", "no_valid_targets")
        assert "not aware of any device called sprinklers" in sprinklers.speech
        assert (chat.kind, chat.code, chat.answered) == ("error", "no_intent_match", False)
        assert client.conversation_id  # HA's conversation id comes back
        ha.home.reset()
        assert ha.home.state("lock.back_door") == "unlocked"
        wrong = HomeAssistantClient(HomeAssistantSettings(host=ha.url, token="nope", timeout_seconds=5))
        with pytest.raises(BackendError, match="rejected the token"):
            _run(wrong.ask("lock the back door"))


# --- scoring --------------------------------------------------------------------------

_TRAITS = {"humor": 50, "sarcasm": 60}


def _seen(**kw) -> Observed:
    base = {"text": "x", "traits_before": dict(_TRAITS), "traits_after": dict(_TRAITS)}
    return Observed(**{**base, **kw})


def _call(name: str, arguments=None, result: str = "") -> dict:
    return {"name": name, "arguments": arguments or {}, "result": result, "decided_by": "templates"}


def test_scoring_judges_what_the_turn_did():
    funnier = EvalCase("be funnier", "update_personality", {"humor": {"more": True}})
    done = _seen(calls=[_call("update_personality")], traits_after={"humor": 70, "sarcasm": 60})
    assert score(funnier, done, home=True).passed
    stray = _seen(calls=[_call("update_personality")], traits_after={"humor": 70, "sarcasm": 10})
    assert score(funnier, stray, home=True).problems == ["also changed sarcasm"]
    assert not score(funnier, _seen(), home=True).right_tool

    song = EvalCase("play fishsticks", "play_song", {"song": "Fish Sticks"})
    assert score(song, _seen(calls=[_call("play_song")], song="Fish Sticks"), home=True).passed
    assert not score(song, _seen(calls=[_call("play_song")], song="Reef Shuffle"), home=True).passed

    bye = EvalCase("bye", "end_conversation")
    assert score(bye, _seen(calls=[_call("end_conversation")], ended=True), home=True).passed
    assert score(bye, _seen(calls=[_call("end_conversation")]), home=True).problems == ["did not end the conversation"]

    lock = EvalCase(
        "lock it", "smart_home_command", {"prompt": {"contains": ["back door"]}}, None, {"lock.d": "locked"}
    )
    call = [_call("smart_home_command", {"prompt": "lock the back door"}, "Locking")]
    assert score(lock, _seen(calls=call, home_after={"lock.d": "locked"}), home=True).passed
    assert not score(lock, _seen(calls=call, home_after={"lock.d": "unlocked"}), home=True).passed
    assert score(lock, _seen(), home=False).passed  # without HA: no tool, Billy says he is not connected
    assert score(lock, _seen(), home=False).expected is None

    advice = EvalCase("should I lock the door?", None)
    acted = _seen(home_before={"lock.d": "unlocked"}, home_after={"lock.d": "locked"})
    assert score(advice, acted, home=True).problems == ["changed the home: lock.d"]
    assert score(advice, _seen(song="Fish Sticks"), home=True).problems == ["played 'Fish Sticks'"]


def test_the_report_counts_precision_recall_and_decisions():
    report = EvalReport(brain="scripted", home=True, spoken=False)
    cases = [
        (EvalCase("bye", "end_conversation"), _seen(calls=[_call("end_conversation")], ended=True, decision_ms=3)),
        (EvalCase("hi", None), _seen(calls=[_call("end_conversation")], ended=True, decision_ms=5)),
        (EvalCase("see ya", "end_conversation"), _seen(decided_by="brain", decision_ms=900, reply="Hm.")),
        (EvalCase("what?", None), _seen(decided_by="brain", decision_ms=700, guard=["meta text: as an AI"])),
    ]
    for case, seen in cases:
        seen.decided_by = seen.decided_by or "templates"
        report.results.append(score(case, seen, home=True))
    table = report.per_tool()
    assert table["end_conversation"]["precision"] == 0.5 and table["end_conversation"]["recall"] == 0.5
    assert table[NO_TOOL]["precision"] == 0.5 and table[NO_TOOL]["recall"] == 0.5
    assert report.accuracy == 0.5 and report.decided_by() == {"brain": 2, "templates": 2}
    printed = report.format()
    assert "Accuracy: 2/4 = 50.0%" in printed and "FAIL" in printed and "reply: 'Hm.'" in printed
    assert "Guard rejections: 1" in printed and "meta text: as an AI" in printed
    assert "templates       median" in printed and "Replies that leaked: none" in printed


# --- the real path, with a scripted brain (fast) ----------------------------------------


def _scripted_brain() -> ScriptedBrain:
    def answer(messages):
        last = messages[-1]
        if last["role"] == "tool":
            return reply("There you go.")
        if "frobnicate" in last["content"].lower():
            return [ToolCall("play_song", {"song": "fishsticks"}), BrainDone()]
        if "leak" in last["content"]:
            return [TextDelta("As an AI language model, I cannot. "), BrainDone()]
        return reply("Just a fish on a wall, pal.")

    return ScriptedBrain([answer])


def test_the_bench_runs_cases_through_the_real_turn(tmp_path):
    cases = tmp_path / "cases.jsonl"
    lines = [
        {"say": "Sing Fish Sticks.", "tool": "play_song", "args": {"song": "Fish Sticks"}},
        {"say": "Lock the back door.", "tool": "smart_home_command", "home": {"lock.back_door": "locked"}},
        {"say": "is the back door locked", "tool": "smart_home_command", "result": {"contains": ["no"]}},
        {"say": "Frobnicate, Billy.", "tool": "play_song", "args": {"song": "Fish Sticks"}},
        {"say": "Do a leak for me", "tool": None},
    ]
    cases.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    seen: list[str] = []
    report = _run(
        run_eval(Settings(), lambda settings, card: _scripted_brain(), cases_path=cases, on_case=seen.append),
        timeout=120,
    )
    assert len(report.results) == 5 and len(seen) == 6  # a title, then one line per case
    sing, lock, locked, dance, leak = report.results
    assert sing.observed.decided_by == "templates" and sing.passed, report.format_case(sing)
    assert lock.observed.decided_by == "home assistant" and lock.passed, report.format_case(lock)
    assert locked.passed, report.format_case(locked)  # each case starts from the same home
    assert dance.observed.decided_by == "brain" and dance.passed, report.format_case(dance)
    assert dance.observed.calls[0]["decided_by"] == "brain"
    assert leak.observed.guard and leak.observed.reply and not leak.observed.leaks
    assert all(r.observed.decision_ms is not None for r in report.results)
    assert report.brain.startswith("scripted-brain answered")


def test_the_bench_restores_the_persona_between_cases():
    bench = EvalBench(Settings(), home=False)
    try:
        bench.brain = _scripted_brain()
        first = _run(bench.run("set your humor to 10"))
        second = _run(bench.run("set your humor to 10"))
        assert first.traits_before == second.traits_before
        assert first.traits_after["humor"] == 10 and first.traits_before["humor"] != 10
        assert bench.songs.titles() and len(bench.songs.titles()) == len(SONGS) + 1
    finally:
        bench.close()


# --- the real path, with the embedded brain ---------------------------------------------


@pytest.mark.slow
def test_a_few_cases_with_the_embedded_brain(tmp_path):
    from core.app import build_brain

    picked = [
        "Set your humor to 90 percent.",
        "Sing Fish Sticks.",
        "Goodbye.",
        "Lock the back door.",
        "Should I turn off the kitchen light?",
        "How are you today?",
    ]
    by_text = {c.say: c for c in load_cases()}
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        "\n".join(
            json.dumps({"say": s, "tool": by_text[s].tool, "args": by_text[s].args, "home": by_text[s].home})
            for s in picked
        )
    )
    report = _run(run_eval(Settings(), build_brain, cases_path=cases), timeout=600)
    print(report.format())
    assert len(report.results) == len(picked)
    assert not [leak for r in report.results for leak in r.observed.leaks]
    commands = report.results[:4]
    assert [r.passed for r in commands] == [True] * 4, report.format()
    assert report.results[5].observed.decided_by == "brain" and report.results[5].observed.reply
    assert "embedded answered" in report.brain
