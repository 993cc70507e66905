"""The sentence splitter: early, correct cuts, the same however the text is streamed."""

from __future__ import annotations

import pytest

from core.voice.sentences import SentenceSplitter


def _all_at_once(text: str, **kwargs) -> list[str]:
    splitter = SentenceSplitter(**kwargs)
    return splitter.feed(text) + splitter.flush()


def _char_by_char(text: str, **kwargs) -> list[str]:
    splitter = SentenceSplitter(**kwargs)
    pieces = []
    for ch in text:
        pieces += splitter.feed(ch)
    return pieces + splitter.flush()


CASES = [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Wow! Really?! Yes.", ["Wow!", "Really?!", "Yes."]),
    ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
    ("Pi is about 3.14 today. Nice.", ["Pi is about 3.14 today.", "Nice."]),
    ("Bring fruit, e.g. apples. And bread.", ["Bring fruit, e.g. apples.", "And bread."]),
    (
        "Apples, pears, etc. are fruit. Fish, etc. Then more.",
        ["Apples, pears, etc. are fruit.", "Fish, etc.", "Then more."],
    ),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("It was big (really big.) Then small.", ["It was big (really big.)", "Then small."]),
    ("Well... I think so. Hmm... maybe not.", ["Well...", "I think so.", "Hmm... maybe not."]),
    ("Wait… What?", ["Wait…", "What?"]),
    ("Shopping list:\n1. Milk\n2. Eggs\n\nThat's all.", ["Shopping list:", "1. Milk", "2. Eggs", "That's all."]),
    ("Meet J. R. R. Tolkien at 5 p.m. Bring tea.", ["Meet J. R. R. Tolkien at 5 p.m.", "Bring tea."]),
    ("Visit example.com today. Bye.", ["Visit example.com today.", "Bye."]),
    ("No trailing punctuation", ["No trailing punctuation"]),
    ("**Bold start.** Next one.", ["**Bold start.**", "Next one."]),
    ("🐟\n\n...\nHi.", ["Hi."]),
    ("", []),
]


@pytest.mark.parametrize(("text", "pieces"), CASES)
def test_sentences(text: str, pieces: list[str]) -> None:
    assert _all_at_once(text, first_clause_words=0) == pieces
    assert _char_by_char(text, first_clause_words=0) == pieces


FIRST_CLAUSE = [
    (
        "Well, I think that the weather tomorrow, in Paris, will be sunny and warm. Bring a hat, just in case.",
        ["Well, I think that the weather tomorrow,", "in Paris, will be sunny and warm.", "Bring a hat, just in case."],
    ),
    ("Short one, yes. Then, more text follows here.", ["Short one, yes.", "Then, more text follows here."]),
    (
        "The big brown fish sang loudly — everyone clapped. Great.",
        ["The big brown fish sang loudly —", "everyone clapped.", "Great."],
    ),
    (
        "One two three four five six: the list goes on. Done.",
        ["One two three four five six:", "the list goes on.", "Done."],
    ),
    (
        "It costs 3,000 dollars for one big fish tank, sadly.",
        ["It costs 3,000 dollars for one big fish tank,", "sadly."],
    ),
    (  # a run-on first sentence is cut before its last joining word within a dozen words
        "The answer is because of a process called Rayleigh scattering that occurs when light hits air. Yes.",
        ["The answer is because of a process called Rayleigh scattering", "that occurs when light hits air.", "Yes."],
    ),
    (  # no joining word: cut after the twelfth word
        "Billy Bass sings old soul songs from nineteen seventy two with great gusto every single morning now.",
        ["Billy Bass sings old soul songs from nineteen seventy two with great", "gusto every single morning now."],
    ),
    (  # a joining word in the first four words does not count; only the first piece is cut this way
        "And then I swam and swam across the big blue sea to find my friend the crab. "
        "After that we sang a very long song together on the rocks until the sun went down.",
        [
            "And then I swam",
            "and swam across the big blue sea to find my friend the crab.",
            "After that we sang a very long song together on the rocks until the sun went down.",
        ],
    ),
]


@pytest.mark.parametrize(("text", "pieces"), FIRST_CLAUSE)
def test_first_piece_may_end_at_a_clause(text: str, pieces: list[str]) -> None:
    assert _all_at_once(text) == pieces
    assert _char_by_char(text) == pieces


def test_pieces_come_out_as_soon_as_they_are_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there") == []
    assert splitter.feed(".") == []  # might be "there.com" or "there.\"": wait for the next character
    assert splitter.feed(" How") == ["Hello there."]
    assert splitter.feed(" are you? I am") == ["How are you?"]
    assert splitter.feed(" fine") == []
    assert splitter.flush() == ["I am fine"]
    assert splitter.flush() == []


def test_random_delta_sizes_give_the_same_pieces() -> None:
    import random

    text = " ".join(t for t, _ in CASES + FIRST_CLAUSE)
    expected = _all_at_once(text)
    rng = random.Random(3)
    for _ in range(30):
        splitter, pieces, i = SentenceSplitter(), [], 0
        while i < len(text):
            step = rng.randint(1, 12)
            pieces += splitter.feed(text[i : i + step])
            i += step
        assert pieces + splitter.flush() == expected


def test_a_long_run_without_punctuation_is_cut_at_a_space() -> None:
    text = "word " * 100
    pieces = _char_by_char(text, first_clause_words=0, max_chars=120)
    assert all(len(p) <= 120 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert pieces == _all_at_once(text, first_clause_words=0, max_chars=120)


def test_reset_starts_a_new_reply() -> None:
    splitter = SentenceSplitter()
    splitter.feed("One two three four five six, seven. ")
    splitter.reset()
    assert splitter.feed("Alpha beta gamma delta epsilon zeta, eta. ") == [
        "Alpha beta gamma delta epsilon zeta,",
        "eta.",
    ]
