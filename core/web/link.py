"""Billy's side of his page: what he tells it, and what it may ask of him.

`PageLink` runs the channel server on Billy's loop from the very start (the page then says
"Billy is starting" while the models load), and once he is built it follows his state,
turns, motors, voice (in simulation), persona and log, and answers the page's requests by
handing them to him: say and talk go through `Billy.submit` like `billy/say`, persona
changes through the persona store and library (atomic writes), the motor test through
his own body, so nobody has to stop him to free the pins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from core.config import Settings
from core.errors import BillyError, PersonaError
from core.interfaces import Microphone, TurnRecord
from core.persona.library import PersonaLibrary, parse_edit, persona_json
from core.persona.requests import PersonaRequest, apply_persona_request
from core.state import State, StateChange
from core.talk.requests import CommandRequest, SayRequest, SongRequest
from core.web.address import page_url
from core.web.channel import ChannelServer
from core.web.processes import PageSupervisor
from core.web.protocol import SOCKET_NAME, Request
from core.web.taps import AudioTap, LogTap, MicTap

if TYPE_CHECKING:
    from core.app import Billy
    from core.talk.turn import SessionHooks

log = logging.getLogger(__name__)

SPEAKER_TEST_LINE = "Testing my speaker: one, two, three. Can you hear me?"


def turn_json(record: TurnRecord) -> dict[str, Any]:
    """A turn as the page shows it (the `turn` event's fields)."""
    body = dataclasses.asdict(record)
    body["tools"] = [call["name"] for call in body.pop("tool_calls")]
    return body


def secrets_of(settings: Settings) -> list[str]:
    """The secret values of these settings, to blank out of anything the page gets."""
    return [
        settings.models.openai_api_key,
        settings.mqtt.password,
        settings.home_assistant.token,
        settings.web.password,
    ]


class PageLink:
    """The channel server plus the taps and request handlers that connect it to one Billy."""

    def __init__(self, settings: Settings, supervise: bool = True):
        self.settings = settings
        self.server = ChannelServer(settings.web.runtime_dir / SOCKET_NAME, self._handle, self._hello)
        self.logs = LogTap(self.server.publish_threadsafe, secrets_of(settings))
        self.library = PersonaLibrary(settings.persona.directory)
        self.supervisor = PageSupervisor(settings.web.runtime_dir, settings.env_file) if supervise else None
        self.billy: Billy | None = None
        self.mic: MicTap | None = None
        self._last_turn: dict[str, Any] | None = None

    async def start(self) -> None:
        """Open the channel, start sending log lines and (unless run elsewhere) the page process.

        Billy's parts follow with `attach`, once he is built.
        """
        await self.server.start()
        logging.getLogger().addHandler(self.logs)
        if self.supervisor is not None:
            self.supervisor.start()
            log.info("Billy's page: %s", page_url(self.settings.web))

    async def close(self, stop_page: bool = False) -> None:
        """Close the channel; with `stop_page` also end the page this Billy started (if he did)."""
        if self.supervisor is not None:
            await self.supervisor.stop(stop_page)
        logging.getLogger().removeHandler(self.logs)
        await self.server.close()

    def tap_mic(self, mic: Microphone) -> MicTap:
        """The mic to give the session: the same frames, plus the page's level meter."""
        self.mic = MicTap(mic, self.server.publish_threadsafe)
        return self.mic

    def attach(self, billy: Billy, hooks: SessionHooks) -> None:
        """Follow a started Billy; pages already connected get a fresh `hello`."""
        self.billy = billy
        publish = self.server.publish_threadsafe
        billy.state.subscribe(self._on_state)
        hooks.on_turn.append(self._on_turn)
        if billy.body is not None:
            billy.body.add_listener(self._on_motion)
        if billy.devices.simulated_audio:
            billy.devices.speaker.add_listener(AudioTap(publish, lambda: self.server.has_pages))
        if billy.personas is not None:
            billy.personas.subscribe(lambda _: self.persona_changed())
        publish({**self._hello(), "type": "hello"})

    def persona_changed(self) -> None:
        """Tell the page (and Home Assistant) about the persona in use and the list; any thread."""
        billy = self.billy
        if billy is None or billy.personas is None:
            return
        persona = billy.personas.current()
        self.server.publish_threadsafe(
            {"type": "persona", "persona": persona_json(persona), "personas": self.library.names()}
        )
        if billy.mqtt is not None:
            billy.mqtt.publish_persona(persona.name, persona.traits, self.library.names())

    # --- events ---------------------------------------------------------------------------

    def _hello(self) -> dict[str, Any]:
        billy = self.billy
        ready = billy is not None and billy.session is not None
        hello: dict[str, Any] = {
            "pid": os.getpid(),
            "ready": ready,
            "state": billy.state.state.value if ready and billy is not None else "starting",
            "last_turn": self._last_turn,
            "logs": self.logs.lines(),
            "simulated_audio": bool(billy and billy.devices.simulated_audio),
            "simulated_pins": bool(billy and billy.devices.simulated_pins),
            "persona": None,
            "personas": self.library.names(),
            "songs": [],
        }
        if ready and billy is not None:
            if billy.personas is not None:
                hello["persona"] = persona_json(billy.personas.current())
            if billy.songs is not None:
                hello["songs"] = [{"name": s.name, "title": s.title} for s in billy.songs.songs()]
        return hello

    def _on_state(self, change: StateChange) -> None:
        self.server.publish_threadsafe(
            {"type": "state", "state": change.current.value, "previous": change.previous.value, "reason": change.reason}
        )

    def _on_motion(self, t: float, motor: str, value: float) -> None:
        """The motion thread: every motor command, as the pins get it."""
        if self.server.has_pages:
            motion = {"type": "motion", "t": round(t, 4), "motor": motor, "value": round(value, 3)}
            self.server.publish_threadsafe(motion)

    def _on_turn(self, record: TurnRecord) -> None:
        self._last_turn = turn_json(record)
        self.server.publish_threadsafe({"type": "turn", **self._last_turn})

    # --- requests -------------------------------------------------------------------------

    async def _handle(self, request: Request) -> dict[str, Any]:
        billy = self.billy
        if billy is None or billy.session is None:
            raise BillyError("Billy is still starting; try again in a moment.")
        args = request.args
        kind = request.type
        if kind == "say":
            billy.submit(SayRequest(args["text"]))
        elif kind == "talk":
            billy.submit(SayRequest(args["text"], prompt=True, interactive=True))
        elif kind == "command":
            billy.submit(CommandRequest(args["command"]))
        elif kind == "song":
            song = billy.songs.find(args["song"]) if billy.songs is not None else None
            if song is None:
                raise BillyError(f"No song matches {args['song'][:40]!r}.")
            billy.submit(SongRequest(song.name))
        elif kind == "test.speaker":
            billy.submit(SayRequest(SPEAKER_TEST_LINE))
        elif kind == "test.motors":
            return self._motor_test(billy)
        elif kind == "mic.meter":
            if self.mic is not None:
                self.mic.metering = args["on"]
        elif kind.startswith("persona."):
            return await asyncio.to_thread(self._persona, billy, kind, args)
        return {}

    def _motor_test(self, billy: Billy) -> dict[str, Any]:
        from core.dev.motortest import motor_test_moves

        assert billy.session is not None
        if billy.session.busy or billy.state.state is not State.IDLE or billy.body is None:
            raise BillyError("Billy is busy: try the motor test when he is idle.")
        seconds = billy.body.play_moves(motor_test_moves())
        log.info("motor test from the page: mouth, head, tail (%.1f s)", seconds)
        return {"seconds": seconds}

    def _persona(self, billy: Billy, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        """Persona requests, on a worker thread (they read and write files)."""
        store = billy.personas
        if store is None:
            raise PersonaError("Billy has no persona store.")
        name = args["name"]
        env_file = self.settings.env_file
        if kind == "persona.get":
            return {"persona": persona_json(self.library.read(name))}
        if kind == "persona.use":
            apply_persona_request(PersonaRequest(self.library.read(name).name), store, env_file)
        elif kind == "persona.save":
            persona = self.library.save(name, parse_edit(args["edit"]))
            if persona.name == store.name:
                store.current()  # sees the new file now, so the next turn and the wake-up clips use it
        elif kind == "persona.create":
            self.library.create(name, args["source"])
        elif kind == "persona.rename":
            in_use = store.name == name
            self.library.rename(name, args["new_name"])
            if in_use:
                apply_persona_request(PersonaRequest(args["new_name"]), store, env_file)
        elif kind == "persona.delete":
            if store.name == name:
                raise PersonaError(f"{name} is the persona in use: choose another one before deleting it.")
            self.library.delete(name)
        self.persona_changed()
        return {"personas": self.library.names(), "current": store.name}
