"""Tool calls written as text by small models, found in a streamed reply without delaying plain text."""

from __future__ import annotations

import pytest

from core.brains.arguments import parse_arguments
from core.brains.toolparse import TextToolCallFilter, to_tool_calls
from core.interfaces import ToolCall


def _run(chunks: list[str], tools=None) -> tuple[str, list[ToolCall], list[str]]:
    """Feed chunks; return all spoken text, all calls, and the text released after each chunk."""
    text_filter = TextToolCallFilter() if tools is None else TextToolCallFilter(tools)
    released, calls = [], []
    for chunk in chunks:
        text, found = text_filter.feed(chunk)
        released.append(text)
        calls += found
    text, found = text_filter.flush()
    released.append(text)
    return "".join(released), calls + found, released


def _chars(text: str) -> list[str]:
    return list(text)


PLAY = ToolCall(name="play_song", arguments={"song": "River Song"})


@pytest.mark.parametrize(
    "written",
    [
        '{"name": "play_song", "arguments": {"song": "River Song"}}',
        '{"name": "play_song", "parameters": {"song": "River Song"}}',
        '{"function": {"name": "play_song", "arguments": "{\\"song\\": \\"River Song\\"}"}}',
        '{"type": "function", "function": {"name": "play_song", "arguments": {"song": "River Song"}}}',
        '{"tool_calls": [{"name": "play_song", "arguments": {"song": "River Song"}}]}',
        '{"play_song": {"song": "River Song"}}',
        '{"name": "play_song", "song": "River Song"}',
        "{'name': 'play_song', 'arguments': {'song': 'River Song',},}",
        '<tool_call>\n{"name": "play_song", "arguments": {"song": "River Song"}}\n</tool_call>',
        '<tool_call>play_song(song="River Song")</tool_call>',
        '```json\n{"name": "play_song", "arguments": {"song": "River Song"}}\n```',
        'play_song(song="River Song")',
        'functions.play_song(song="River Song")',
        "play_song('River Song')",
        '[TOOL_CALLS] [{"name": "play_song", "arguments": {"song": "River Song"}}]',
        '[{"name": "play_song", "arguments": {"song": "River Song"}}]',
        '<|python_tag|>{"name": "play_song", "parameters": {"song": "River Song"}}',
        '<function=play_song>{"song": "River Song"}</function>',
    ],
)
@pytest.mark.parametrize("split", ["whole", "chars"])
def test_calls_written_as_text_become_tool_calls_and_are_not_spoken(written, split):
    reply = f"Here goes! {written} Enjoy."
    chunks = [reply] if split == "whole" else _chars(reply)
    spoken, calls, _ = _run(chunks)
    assert calls == [PLAY]
    assert spoken.split() == ["Here", "goes!", "Enjoy."]


@pytest.mark.parametrize(
    "reply",
    [
        "Plain words, nothing else. Play me a song? I'd love to play.",
        "Curly {braces} and { spaces } stay, so do 3 < 5 and <b> and [brackets].",
        "A `tick` or two, and play_song as a word, and end of story.",
        '{"humor": 90} is not a call, so it is spoken.',
        "Élan! Ça va, señor? Ürgüp, naïve café, 日本語 and Ωmega.",
    ],
)
def test_ordinary_text_passes_through_unchanged(reply):
    for chunks in ([reply], _chars(reply)):
        spoken, calls, _ = _run(chunks)
        assert (spoken, calls) == (reply, [])


def test_plain_text_is_released_at_once_not_held_for_the_sentence():
    _, _, released = _run(["Hello there", ", my friend", ". How", " are you?"])
    assert released[:4] == ["Hello there", ", my friend", ". How", " are you?"]


def test_a_possible_call_is_held_only_until_it_can_be_decided():
    text_filter = TextToolCallFilter()
    assert text_filter.feed("I will play") == ("I will ", [])  # "play" may start play_song
    assert text_filter.feed(" it now") == ("play it now", [])
    assert text_filter.feed(" {") == (" ", [])
    assert text_filter.feed("nope}") == ("{nope}", [])
    assert not text_filter.holding


def test_a_call_cut_off_at_the_end_is_still_recovered_on_flush():
    spoken, calls, _ = _run(["Sure. ", '{"name": "smart_home_command", "arguments": {"prompt": "kitchen lights on'])
    assert spoken == "Sure. "
    assert calls == [ToolCall(name="smart_home_command", arguments={"prompt": "kitchen lights on"})]


def test_a_bare_end_conversation_word_is_a_call():
    spoken, calls, _ = _run(["Bye now! ", "end_conversation"])
    assert (spoken, calls) == ("Bye now! ", [ToolCall(name="end_conversation", arguments={})])
    _, calls, _ = _run(["Bye! end_conversation()"])
    assert calls == [ToolCall(name="end_conversation", arguments={})]


def test_two_calls_in_one_reply_are_both_found():
    _, calls, _ = _run(['{"name": "update_personality", "arguments": {"humor": 90}} and play_song(song="x")'])
    assert [c.name for c in calls] == ["update_personality", "play_song"]


def test_positional_arguments_map_onto_the_schema_order():
    schema = {"type": "function", "function": {"name": "smart_home_command", "parameters": {
        "type": "object", "properties": {"prompt": {"type": "string"}}}}}  # fmt: skip
    _, calls, _ = _run(['smart_home_command("lights off")'], tools=[schema])
    assert calls == [ToolCall(name="smart_home_command", arguments={"prompt": "lights off"})]


def test_unreadable_markup_is_dropped_not_spoken():
    spoken, calls, _ = _run(["Ok. <tool_call>what even is this</tool_call> Done."])
    assert (spoken, calls) == ("Ok.  Done.", [])


def test_a_runaway_candidate_is_released_as_text():
    reply = "{" + '"a": "' + "x" * 5000
    spoken, calls, _ = _run([reply, " more"])
    assert calls == [] and spoken == reply + " more"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"humor": 90}', {"humor": 90}),
        ("{'humor': 90,}", {"humor": 90}),
        ('{"a": true, "b": None, "c": False}', {"a": True, "b": None, "c": False}),
        ('{"song": "Don\'t Stop",}', {"song": "Don't Stop"}),
        ('"{\\"humor\\": 90}"', {"humor": 90}),
        ('song="x", humor=90', {"song": "x", "humor": 90}),
        ('```json\n{"x": 1}\n```', {"x": 1}),
        ('{"a": [1, 2', {"a": [1, 2]}),
        ("", {}),
        ("not json at all", None),
        ("[1, 2]", None),
        ("42", None),
    ],
)
def test_parse_arguments_is_lenient(raw, expected):
    assert parse_arguments(raw) == expected


def test_to_tool_calls_ignores_objects_that_are_not_calls():
    assert to_tool_calls({"humor": 90}) == []
    assert to_tool_calls({"name": "Bob", "age": 3}) == []
    assert to_tool_calls("play_song") == []
