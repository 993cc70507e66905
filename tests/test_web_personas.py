"""Billy's side of the page: the persona library and store, and the requests the page sends.

The link is driven exactly as the channel drives it (`PageLink._handle` with checked
requests) against a real persona store and library on a copy of personas/, real songs and
a real body on gpiozero's mock pins; what is checked is what changed: files, the persona
in use, the requests Billy got, the motors' moves.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values
from gpiozero.pins.mock import MockFactory, MockPWMPin

from core.body.motion import Body
from core.body.songs import SongLibrary
from core.config import ROOT, load_settings
from core.envfile import update_env_file
from core.errors import BillyError, PersonaError
from core.persona.library import PersonaLibrary, check_name, parse_edit
from core.persona.store import PersonaStore
from core.state import State, StateOwner
from core.talk.requests import CommandRequest, SayRequest, SongRequest
from core.web.link import PageLink
from core.web.protocol import parse_request


@pytest.fixture
def personas(tmp_path) -> Path:
    folder = tmp_path / "personas"
    shutil.copytree(ROOT / "personas", folder)
    return folder


def edit_of(library: PersonaLibrary, name: str, **changes: Any) -> dict[str, Any]:
    persona = library.read(name)
    data = {
        "traits": dict(persona.traits),
        "backstory": dict(persona.backstory),
        "display_name": persona.display_name,
        "instructions": persona.instructions,
        "wakeup": list(persona.wakeup),
    }
    for key, value in changes.items():
        if key in ("traits", "backstory"):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


# --- the library ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../billy", "..", "billy/../pirate", "/etc/passwd", "Billy", "", "a b", "x" * 41, 7])
def test_names_that_could_leave_the_folder_are_refused(personas, name):
    with pytest.raises(PersonaError, match="not a persona name"):
        check_name(name)
    library = PersonaLibrary(personas)
    with pytest.raises(PersonaError):
        library.path(name)
    with pytest.raises(PersonaError):
        library.create(name, "billy")
    with pytest.raises(PersonaError):
        library.rename("pirate", name)


def test_save_changes_only_what_was_edited_and_keeps_comments(personas):
    library = PersonaLibrary(personas)
    path = personas / "billy" / "persona.ini"
    before = path.read_text()
    edit = edit_of(library, "billy", traits={"humor": 10}, backstory={"favourite food": "plankton"})
    del edit["backstory"]["dislikes"]
    saved = library.save("billy", parse_edit(edit))
    after = path.read_text()
    assert saved.traits["humor"] == 10 and saved.backstory["favourite food"] == "plankton"
    assert "dislikes" not in saved.backstory
    assert after.splitlines()[0] == before.splitlines()[0]  # the comment on top
    assert "humor = 10" in after and "sarcasm = 60" in after
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert sorted(changed) == ["favourite food = plankton", "humor = 10"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"traits": {"humor": 101}}, "0 to 100"),
        ({"traits": {"humor": True}}, "0 to 100"),
        ({"traits": {"humor": "high"}}, "0 to 100"),
        ({"backstory": {"bad=key": "x"}}, "backstory fact"),
        ({"backstory": {"[META]": "x"}}, "backstory fact"),
        ({"instructions": "x" * 3001}, "keep it under"),
        ({"wakeup": "not a list"}, "list"),
        ({"display_name": "bell\x07"}, "control character"),
    ],
)
def test_bad_edits_are_refused_with_a_reason(personas, change, why):
    library = PersonaLibrary(personas)
    with pytest.raises(PersonaError, match=why):
        parse_edit(edit_of(library, "billy", **change))


def test_create_rename_delete(personas):
    library = PersonaLibrary(personas)
    library.create("my_billy", "pirate")
    assert library.read("my_billy").traits == library.read("pirate").traits
    with pytest.raises(PersonaError, match="already exists"):
        library.create("my_billy", "billy")
    library.rename("my_billy", "captain")
    assert "captain" in library.names() and "my_billy" not in library.names()
    trashed = library.delete("captain")
    assert "captain" not in library.names()
    assert trashed.parent == personas / ".trash" and (trashed / "persona.ini").is_file()
    loose = personas / "loose.ini"
    loose.write_text("[PERSONALITY]\nhumor = 5\n")
    library.rename("loose", "tight")
    assert (personas / "tight.ini").is_file() and library.read("tight").traits["humor"] == 5


def test_the_store_switches_persona_and_says_so(personas):
    store = PersonaStore(load_settings(personas / "absent.env", {"PERSONA_DIR": str(personas)}).persona)
    heard = []
    store.subscribe(lambda p: heard.append(p.name))
    assert store.use("pirate").name == "pirate"
    assert store.name == "pirate" and store.current().name == "pirate" and heard == ["pirate"]
    for bad in ("../billy", "nobody"):
        with pytest.raises(PersonaError):
            store.use(bad)
    assert store.name == "pirate" and heard == ["pirate"]


# --- the link's requests ---------------------------------------------------------------------


@dataclass
class FakeSession:
    busy: bool = False


@dataclass
class FakeDevices:
    simulated_audio: bool = False
    simulated_pins: bool = True


@dataclass
class FakeBilly:
    """What PageLink uses of Billy: his state, session, persona store, songs, body and submit."""

    settings: Any
    personas: PersonaStore
    body: Body
    songs: SongLibrary = field(default_factory=lambda: SongLibrary(ROOT / "sounds" / "songs"))
    state: StateOwner = field(default_factory=StateOwner)
    session: FakeSession = field(default_factory=FakeSession)
    devices: FakeDevices = field(default_factory=FakeDevices)
    mqtt: Any = None
    submitted: list = field(default_factory=list)

    def submit(self, request) -> None:
        self.submitted.append(request)


@pytest.fixture
def billy(tmp_path, personas):
    settings = load_settings(
        tmp_path / ".env",
        {"PERSONA_DIR": str(personas), "WEB_RUNTIME_DIR": str(tmp_path / "rt")},
    )
    (tmp_path / ".env").write_text("# mine\nPERSONA=billy\n")
    settings = replace(settings, env_file=tmp_path / ".env")
    body = Body(settings.motion, pin_factory=MockFactory(pin_class=MockPWMPin))
    fake = FakeBilly(settings, PersonaStore(settings.persona), body)
    link = PageLink(settings, supervise=False)
    link.billy = fake  # type: ignore[assignment]
    yield fake, link
    body.close()


def ask(link: PageLink, kind: str, **fields: Any) -> dict:
    return asyncio.run(link._handle(parse_request({"type": kind, "id": 1, **fields})))


def test_say_talk_command_and_song_become_billys_requests(billy):
    fake, link = billy
    ask(link, "say", text="Dinner is ready")
    ask(link, "talk", text="What is the capital of France?")
    ask(link, "command", command="stop")
    ask(link, "song", song="reef")
    ask(link, "test.speaker")
    assert fake.submitted[:4] == [
        SayRequest("Dinner is ready"),
        SayRequest("What is the capital of France?", prompt=True, interactive=True),
        CommandRequest("stop"),
        SongRequest("reef_shuffle"),
    ]
    assert isinstance(fake.submitted[4], SayRequest) and not fake.submitted[4].prompt
    with pytest.raises(BillyError, match="No song matches"):
        ask(link, "song", song="bohemian rhapsody")


def test_persona_requests_go_through_the_store_and_library(billy, tmp_path):
    fake, link = billy
    store = fake.personas
    ask(link, "persona.use", name="pirate")
    assert store.name == "pirate"
    assert dotenv_values(tmp_path / ".env")["PERSONA"] == "pirate"
    assert (tmp_path / ".env").read_text().startswith("# mine\n")
    edit = edit_of(link.library, "pirate", traits={"humor": 3})
    ask(link, "persona.save", name="pirate", edit=edit)
    assert store.current().traits["humor"] == 3  # the persona in use, from its next turn
    ask(link, "persona.create", name="pirate_two", source="pirate")
    got = ask(link, "persona.get", name="pirate_two")["persona"]
    assert got["traits"]["humor"] == 3 and got["name"] == "pirate_two"
    with pytest.raises(PersonaError, match="in use"):
        ask(link, "persona.delete", name="pirate")
    ask(link, "persona.rename", name="pirate", new_name="captain")  # the one in use follows
    assert store.name == "captain" and dotenv_values(tmp_path / ".env")["PERSONA"] == "captain"
    answer = ask(link, "persona.delete", name="pirate_two")
    assert "pirate_two" not in answer["personas"] and answer["current"] == "captain"
    for bad in ("../billy", "billy/.."):
        with pytest.raises(PersonaError, match="not a persona name"):
            ask(link, "persona.use", name=bad)


def test_the_motor_test_moves_billys_own_body_and_only_when_idle(billy):
    fake, link = billy
    moves: list[tuple[str, float]] = []
    done = threading.Event()

    def record(t: float, motor: str, value: float) -> None:
        moves.append((motor, value))
        if (motor, value) == ("tail", 0.0):  # the last step: every motor is off again
            done.set()

    fake.body.add_listener(record)
    fake.state.set(State.SPEAKING)
    with pytest.raises(BillyError, match="busy"):
        ask(link, "test.motors")
    fake.state.set(State.IDLE)
    started = time.monotonic()
    seconds = ask(link, "test.motors")["seconds"]
    assert 2 < seconds < 4
    assert done.wait(seconds + 2), moves
    assert time.monotonic() - started >= 2.3  # the steps take their time: tail back at 2.4 s
    assert moves == [("mouth", 1.0), ("mouth", 0.0), ("head", 1.0), ("head", 0.0), ("tail", 1.0), ("tail", 0.0)]


def test_a_persona_the_settings_page_saved_is_not_written_twice(billy, tmp_path):
    fake, link = billy
    update_env_file(tmp_path / ".env", {"PERSONA": "pirate"})  # the settings page saves, then asks Billy
    backup = (tmp_path / ".env.bak").read_text()
    ask(link, "persona.use", name="pirate")
    assert fake.personas.name == "pirate"
    assert (tmp_path / ".env.bak").read_text() == backup == "# mine\nPERSONA=billy\n"
