"""Builds Billy from settings and runs him: the one place where the parts are wired.

Start-up loads and warms every model before Billy says he is ready, so the first turn is
as fast as the hundredth. Optional parts that fail (Ollama down, no MQTT broker, no Home
Assistant) are reported in one line each and Billy starts without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.body.button import FishButton, read_keyboard
from core.body.pins import pin_factory as body_pin_factory
from core.config import Settings
from core.errors import BackendError, BillyError
from core.hybrid import HybridBrain, HybridSynthesizer, HybridTranscriber
from core.interfaces import Microphone, Speaker
from core.persona.requests import PersonaRequest, TraitRequest, apply_persona_request
from core.state import State, StateOwner
from core.talk.requests import CommandRequest, Request, RequestQueue, SayRequest, SongRequest, describe
from core.talk.session import Session
from core.talk.turn import SessionHooks

log = logging.getLogger(__name__)

ANNOUNCEMENT_QUEUE = 20
"""Announcements and songs waiting while Billy is busy; beyond this the oldest is dropped."""


@dataclass
class Devices:
    """The hardware Billy talks through, real or simulated."""

    mic: Microphone
    speaker: Speaker
    pin_factory: Any
    simulated_audio: bool
    simulated_pins: bool


def make_devices(settings: Settings, simulate: bool) -> Devices:
    """Real sound card and pins where they exist; otherwise the simulated ones, said once."""
    from core.audio.simulated import SimulatedMicrophone, SimulatedSpeaker

    pin_factory, simulated_pins = body_pin_factory(simulate)
    if simulate:
        return Devices(
            SimulatedMicrophone(settings.audio.mic_sample_rate),
            SimulatedSpeaker(latency_s=settings.audio.sim_output_latency_ms / 1000),
            pin_factory,
            True,
            simulated_pins,
        )
    try:
        from core.audio.portaudio import SoundDeviceMicrophone, SoundDeviceSpeaker

        mic = SoundDeviceMicrophone(settings.audio.mic_preference, settings.audio.mic_sample_rate)
        speaker = SoundDeviceSpeaker(settings.audio.speaker_preference)
        return Devices(mic, speaker, pin_factory, False, simulated_pins)
    except BillyError as exc:
        log.warning("%s Running with the simulated mic and speaker instead.", exc)
        return Devices(
            SimulatedMicrophone(settings.audio.mic_sample_rate),
            SimulatedSpeaker(latency_s=settings.audio.sim_output_latency_ms / 1000),
            pin_factory,
            True,
            simulated_pins,
        )


def build_brain(settings: Settings, card: Callable[[], str] | None = None) -> HybridBrain:
    """Order of preference: local Ollama, cloud, embedded (or cloud first when not local).

    `card`: the short persona card the embedded brain answers from instead of the long prompt.
    """
    from core.brains.embedded import EmbeddedBrain
    from core.brains.ollama import OllamaBrain

    m = settings.models
    ollama = OllamaBrain(m.local_llm_host, m.local_llm_model, m.local_llm_keep_alive, m.request_timeout_seconds)
    brains: list[Any] = [ollama]
    if m.cloud_enabled:
        from core.brains.openai import OpenAIBrain

        cloud = OpenAIBrain(m.openai_base_url, m.openai_api_key, m.openai_model, m.request_timeout_seconds)
        brains = [ollama, cloud] if m.use_local_models else [cloud, ollama]
    try:
        brains.append(EmbeddedBrain(m.embedded_llm_model, m.embedded_llm_threads, card=card))
    except BackendError as exc:
        log.warning("%s Billy runs without the embedded brain.", exc)
    return HybridBrain(brains, m.breaker_cooldown_seconds)


def build_transcriber(settings: Settings) -> HybridTranscriber:
    """Load (and warm, so the first turn is not slow) the speech-to-text backends."""
    from core.listen.stt import WhisperTranscriber, resolve_whisper_model

    m = settings.models
    local = WhisperTranscriber(resolve_whisper_model(m.local_stt_model), short_window=m.stt_short_window)
    local.warm()
    parts: list[Any] = [local]
    if m.cloud_enabled:
        from core.listen.cloud import OpenAITranscriber

        cloud = OpenAITranscriber(m.openai_base_url, m.openai_api_key, m.openai_stt_model, m.request_timeout_seconds)
        parts = [local, cloud] if m.use_local_models else [cloud, local]
    return HybridTranscriber(parts, m.breaker_cooldown_seconds)


def build_synthesizer(settings: Settings) -> HybridSynthesizer:
    """Load and warm the voices."""
    from core.voice.tts import PiperSynthesizer

    m = settings.models
    local = PiperSynthesizer(m.local_tts_voice)
    local.warm()
    parts: list[Any] = [local]
    if m.cloud_enabled:
        from core.voice.tts import OpenAISynthesizer

        cloud = OpenAISynthesizer(
            m.openai_base_url, m.openai_api_key, m.openai_tts_model, m.openai_tts_voice, m.request_timeout_seconds
        )
        parts = [local, cloud] if m.use_local_models else [cloud, local]
    return HybridSynthesizer(parts, m.breaker_cooldown_seconds)


@dataclass
class Billy:
    """Everything that makes up one running fish, wired together."""

    settings: Settings
    devices: Devices
    state: StateOwner = field(default_factory=StateOwner)
    session: Session | None = None
    body: Any = None
    button: FishButton | None = None
    mqtt: Any = None
    page: Any = None
    """The page's side in this process (`core.web.link.PageLink`), set by `main.py run`; None: no page."""
    personas: Any = None
    songs: Any = None
    restart_requested: bool = False
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    requests: RequestQueue = field(default_factory=lambda: RequestQueue(ANNOUNCEMENT_QUEUE))
    """Announcements and songs waiting while Billy is busy: the one queue, whoever asked."""
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _commands: set[asyncio.Task] = field(default_factory=set)

    async def start(self) -> None:
        """Load and warm everything, then start listening; raises BillyError on a fatal problem."""
        from core.body.motion import Body, button_pin
        from core.body.songs import SongLibrary
        from core.home.homeassistant import HomeAssistantClient
        from core.persona.store import PersonaStore
        from core.talk.parts import build_talk_parts
        from core.voice.wakeup import WakeupClips

        s = self.settings
        loop = asyncio.get_running_loop()
        if self.page is not None:
            await self.page.start()  # the page says "starting" while the models load
        personas = self.personas = PersonaStore(s.persona)
        songs = self.songs = SongLibrary(s.sounds_dir / "songs")
        self.body = Body(s.motion, pin_factory=self.devices.pin_factory)
        self.body.attach(self.devices.speaker)
        self.state.subscribe(self.body.on_state)
        ha = HomeAssistantClient(s.home_assistant) if s.home_assistant.enabled else None
        if ha is not None:
            self.state.subscribe(ha.on_state)
        talk = build_talk_parts(personas, songs, ha)
        tools = talk.tools

        log.info("loading models (speech, voice, brain)...")
        transcriber, synthesizer, brain = await asyncio.gather(
            loop.run_in_executor(None, build_transcriber, s),
            loop.run_in_executor(None, build_synthesizer, s),
            loop.run_in_executor(None, build_brain, s, talk.card),
        )
        wake_word = None
        if s.wake_word.enabled:
            from core.listen.wakeword import WakeWordDetector

            wake_word = await loop.run_in_executor(None, WakeWordDetector, s.wake_word)
        clips = WakeupClips(personas, synthesizer, s.cache_dir, s.sounds_dir / "wakeup")

        await asyncio.gather(
            loop.run_in_executor(None, clips.prepare),
            brain.warm(talk.system_prompt(), tools.schemas()),
        )
        ready = [name for name, state in brain.breaker_states.items() if state == "closed"]
        log.info("brains ready, in order of preference: %s", ", ".join(ready) or "none")

        hooks = SessionHooks()
        self.session = Session(
            s,
            self.state,
            self.page.tap_mic(self.devices.mic) if self.page is not None else self.devices.mic,
            self.devices.speaker,
            transcriber,
            brain,
            synthesizer,
            tools,
            talk.system_prompt,
            clips.pick,
            s.sounds_dir,
            body=self.body,
            songs=songs,
            wake_word=wake_word,
            hooks=hooks,
            understanding=talk.understanding,
            guard=talk.guard,
            fallback=talk.fallback,
        )
        self.devices.speaker.start()
        await self.session.start()
        self.button = FishButton(button_pin(s.motion), loop, self.session.press, self.devices.pin_factory)
        if s.mqtt.enabled:
            self._start_mqtt(loop, hooks)
        persona_changed = asyncio.Event()
        personas.subscribe(lambda _: loop.call_soon_threadsafe(persona_changed.set))
        self._tasks.append(asyncio.create_task(self._announcer(), name="announcer"))
        self._tasks.append(
            asyncio.create_task(
                self._rewarm(persona_changed, brain, talk.system_prompt, tools.schemas, clips.prepare), name="rewarm"
            )
        )
        self.state.set(State.IDLE, "ready")
        if self.page is not None:
            self.page.attach(self, hooks)
        trigger = "say the wake word or press the button" if wake_word else "press the button"
        log.info("Billy is ready: %s.", trigger)

    def _start_mqtt(self, loop: asyncio.AbstractEventLoop, hooks: SessionHooks) -> None:
        from core.home.bridge import MqttBridge

        web = self.settings.web
        page_url = ""
        if self.page is not None and web.password:  # only a page on the network can be visited from HA
            from core.web.address import page_url as address

            page_url = address(web)
        personas = self.personas
        self.mqtt = MqttBridge(
            self.settings.mqtt,
            loop,
            self.submit,
            personas=personas.list_personas(),
            songs=self.songs.titles() if self.songs is not None else (),
            page_url=page_url,
        )
        self.state.subscribe(self.mqtt.on_state)
        hooks.on_turn.append(self.mqtt.publish_turn)
        self.mqtt.publish_state(self.state.state)
        persona = personas.current()
        self.mqtt.publish_persona(persona.name, persona.traits, personas.list_personas())
        personas.subscribe(lambda p: self.mqtt.publish_persona(p.name, p.traits, personas.list_personas()))
        self.mqtt.start()

    def submit(self, request: Request) -> None:
        """A request from outside (MQTT, the page): commands act at once, the rest waits its turn."""
        if isinstance(request, CommandRequest):
            task = asyncio.create_task(self.command(request.command), name=f"command {request.command}")
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)
        elif isinstance(request, PersonaRequest | TraitRequest):
            try:  # a few small file writes: done at once, like a command; the store tells its observers
                apply_persona_request(request, self.personas, self.settings.env_file)
            except BillyError as exc:
                log.warning("%s refused: %s", request, exc)
        else:
            self.requests.put_nowait(request)

    async def _announcer(self) -> None:
        """Announcements and songs, one at a time, each once Billy is free."""
        assert self.session is not None
        while True:
            item = await self.requests.get()
            try:
                if isinstance(item, SayRequest):
                    await self.session.say(item.text, item.prompt, item.interactive)
                elif isinstance(item, SongRequest):
                    await self.session.sing(item.song)
            except Exception:
                log.exception("%s failed; Billy goes on", describe(item))

    async def _rewarm(
        self,
        changed: asyncio.Event,
        brain: Any,
        system_prompt: Callable[[], str],
        schemas: Callable[[], list],
        prepare_clips: Callable[[], object],
    ) -> None:
        """A changed persona changes the system prompt and the wake-up lines: prepare both again while idle."""
        loop = asyncio.get_running_loop()
        while True:
            await changed.wait()
            while self.state.state is not State.IDLE:
                await asyncio.sleep(0.2)
            changed.clear()
            log.info("persona changed: priming the brain with the new system prompt")
            with contextlib.suppress(BackendError):
                await brain.warm(system_prompt(), schemas())
            await loop.run_in_executor(None, prepare_clips)

    async def command(self, command: str) -> None:
        assert self.session is not None
        if command == "listen":
            self.session.listen()
        elif command == "stop":
            await self.session.stop_speaking()
        elif command in ("restart", "shutdown"):
            log.info("%s requested", command)
            self.restart_requested = command == "restart"
            self.stopped.set()
        else:
            log.warning("unknown command %r ignored: use shutdown, restart, listen or stop", command)

    def press(self) -> None:
        """Press the button as a person would (through the pin in simulation)."""
        if self.button is not None and self.devices.simulated_pins:
            self.button.simulate_press()
        elif self.session is not None:
            self.session.press()

    async def run(self) -> None:
        """Run until SIGINT/SIGTERM or a shutdown/restart command."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopped.set)
        keyboard_stop = threading.Event()
        if self.devices.simulated_pins:
            if read_keyboard(lambda: loop.call_soon_threadsafe(self.press), keyboard_stop):
                log.info("simulation: press Enter to press Billy's button")
            else:
                log.info(
                    "simulation: stdin is not a terminal, so Enter cannot press the button; run Billy "
                    "in a terminal, or publish `listen` to the MQTT command topic"
                )
        try:
            await self.stopped.wait()
        finally:
            keyboard_stop.set()

    async def close(self) -> None:
        """Stop everything; motors first, so no exit path leaves one running."""
        if self.body is not None:
            self.body.stop()
        tasks = [*self._tasks, *self._commands]
        for task in tasks:
            task.cancel()
        # Bounded: an announcer waiting in `Session.wait_until_free` does not end on its first cancel
        # while a conversation runs (it did hang SIGTERM and `restart` during a typed turn).
        stuck = (await asyncio.wait(tasks, timeout=2.0))[1] if tasks else set()
        if self.session is not None:
            await self.session.close()
        for task in stuck:  # the conversation is over now: a second cancel ends them
            task.cancel()
        if stuck:
            await asyncio.wait(stuck, timeout=2.0)
        if self.mqtt is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.mqtt.stop)
        if self.button is not None:
            self.button.close()
        self.devices.speaker.stop()
        if self.body is not None:
            self.body.close()
        if self.page is not None:
            # Stopped on purpose (Ctrl-C, SIGTERM, `shutdown`): the page he started goes too. After a
            # crash it stays, to say so and start him again; `restart` keeps it for the new process.
            await self.page.close(stop_page=self.stopped.is_set() and not self.restart_requested)

    def on_state(self, observer: Any) -> None:
        self.state.subscribe(observer)


def restart_process() -> None:
    """Replace this process with a fresh Billy (the `restart` command)."""
    os.execv(sys.executable, [sys.executable, *sys.argv])
