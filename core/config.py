"""Settings: parsed once from `.env` and the environment into frozen dataclasses.

No other module reads `os.environ`; each subsystem gets its own dataclass. An empty
value means "not set" (the default applies). A bad value raises `BadSetting` naming the
variable, the value and what is allowed, so start-up stops with one clear line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

from core.errors import BadSetting

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: personas/, sounds/ and .env live here."""

T = TypeVar("T")


@dataclass(frozen=True)
class AudioSettings:
    mic_preference: str = ""
    """Substring of the input device name to use; empty picks the system default."""
    speaker_preference: str = ""
    """Substring of the output device name to use; empty picks the system default."""
    mic_sample_rate: int = 16000
    """Rate (hertz) of the frames the mic hands to the rest of Billy."""
    half_duplex_tail_ms: int = 300
    """How long (milliseconds) the mic stays gated after the last sample was heard."""
    sim_output_latency_ms: int = 150
    """Output latency (milliseconds) of the simulated speaker, like a real sound card's."""


@dataclass(frozen=True)
class EndpointSettings:
    end_silence_ms: int = 400
    """Silence (milliseconds) after speech that ends an utterance."""
    pre_roll_ms: int = 300
    """Audio (milliseconds) kept from before speech started, so no syllable is lost."""
    min_speech_ms: int = 200
    """Shortest voiced stretch (milliseconds) that counts as speech."""
    max_utterance_seconds: float = 30.0
    """An utterance is cut here even if the speaker keeps talking."""
    pause_tolerance_ms: int = 700
    """A pause this long (milliseconds) inside a sentence never cuts the user off.

    When it is longer than `end_silence_ms`, an answer may be prepared after the end silence
    but is neither spoken nor acted on until speech could no longer have resumed.
    """


@dataclass(frozen=True)
class SessionSettings:
    run_mode: str = "normal"
    """`normal` keeps listening for follow-ups; `dory` ends the session after one answer."""
    mic_timeout_seconds: float = 5.0
    """Silence (seconds) while listening that ends the session."""
    follow_up_retry_limit: int = 1
    """Listens in a row that heard nothing usable before the session ends."""
    history_max_tokens: int = 1500
    """Conversation history kept per session, in (estimated) tokens."""


@dataclass(frozen=True)
class WakeWordSettings:
    enabled: bool = False
    model_path: Path | None = None
    """An openWakeWord `.onnx` model; empty uses the bundled `hey_jarvis`."""
    threshold: float = 0.5
    """Score (0–1) above which the wake word counts."""
    cooldown_seconds: float = 2.0
    """Time (seconds) after a detection during which another one is ignored."""


@dataclass(frozen=True)
class ModelSettings:
    use_local_models: bool = True
    local_llm_host: str = "http://localhost:11434"
    local_llm_model: str = "qwen2.5:1.5b"
    local_llm_keep_alive: str = "24h"
    """How long Ollama keeps the model (and its prompt cache) loaded between turns."""
    local_stt_model: str = ""
    """A faster-whisper model folder, or a size name already on disk; empty: bundled tiny.en."""
    stt_short_window: bool = True
    """Encode only the utterance (padded to 10 s), not Whisper's 30 s: about 3x faster, a little less accurate."""
    local_tts_voice: str = ""
    """A piper voice `.onnx` (with its `.onnx.json` beside it); empty: bundled en_US-joe-medium."""
    embedded_llm_model: str = ""
    """A `.gguf` for the in-process llama.cpp brain; empty: bundled SmolLM2-135M-Instruct."""
    embedded_llm_threads: int = 0
    """Threads for llama.cpp; 0 means all cores but one (left for the voice)."""
    openai_api_key: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_stt_model: str = "whisper-1"
    openai_tts_model: str = "tts-1"
    openai_tts_voice: str = "onyx"
    request_timeout_seconds: float = 20.0
    """Longest wait (seconds) for a network model service to answer."""
    breaker_cooldown_seconds: float = 60.0
    """After a backend fails, it is skipped for this long (seconds) before it is tried again."""

    @property
    def cloud_enabled(self) -> bool:
        return bool(self.openai_api_key)


@dataclass(frozen=True)
class MqttSettings:
    host: str = ""
    port: int = 1883
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_cert: Path | None = None
    topic_prefix: str = "billy"
    device_id: str = "billy"
    """Stable id behind the Home Assistant `unique_id`s; differs per fish on one broker."""
    device_name: str = "Billy Bass"
    discovery_prefix: str = "homeassistant"
    publish_turns: bool = True
    """Publish each turn's transcript and reply on `<prefix>/turn` (off for privacy)."""

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class HomeAssistantSettings:
    host: str = ""
    token: str = ""
    lang: str = "en"
    timeout_seconds: float = 8.0

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.token)


@dataclass(frozen=True)
class MotionSettings:
    billy_model: str = "modern"
    """`modern`: one motor drives head and tail (polarity picks); `classic`: three motors."""
    pin_layout: str = "new"
    pin_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-pin GPIO numbers from `BILLY_PIN_<NAME>`, replacing the layout's."""
    mouth_articulation: int = 5
    """0–10: how wide and long the mouth opens per syllable."""
    watchdog_seconds: float = 30.0
    """A motor driven continuously for longer is braked."""


@dataclass(frozen=True)
class WebSettings:
    port: int = 8080
    """TCP port of Billy's page (FLASK_PORT)."""
    password: str = ""
    """WEB_PASSWORD; empty: the page listens on 127.0.0.1 only and needs no login."""
    enabled: bool = True
    """WEB_ENABLED: false runs Billy without his page."""
    runtime_dir: Path = ROOT / ".cache"
    """Folder of the voice-page channel socket, the page's secret key and the process locks."""

    @property
    def host(self) -> str:
        """Where the page listens: the whole network only behind a password."""
        return "0.0.0.0" if self.password else "127.0.0.1"


@dataclass(frozen=True)
class PersonaSettings:
    name: str = "billy"
    directory: Path = ROOT / "personas"
    allow_update_ini: bool = True
    """Write trait changes the model makes back into the persona file."""


@dataclass(frozen=True)
class Settings:
    audio: AudioSettings = AudioSettings()
    endpoint: EndpointSettings = EndpointSettings()
    session: SessionSettings = SessionSettings()
    wake_word: WakeWordSettings = WakeWordSettings()
    models: ModelSettings = ModelSettings()
    mqtt: MqttSettings = MqttSettings()
    home_assistant: HomeAssistantSettings = HomeAssistantSettings()
    motion: MotionSettings = MotionSettings()
    web: WebSettings = WebSettings()
    persona: PersonaSettings = PersonaSettings()
    sounds_dir: Path = ROOT / "sounds"
    cache_dir: Path = ROOT / ".cache"
    """Generated files (wake-up clips); safe to delete."""
    log_level: str = "INFO"
    env_file: Path = ROOT / ".env"
    """The settings file these were read from; the page and persona choices write it back."""


# --- parsing helpers ------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _Reader:
    """Reads raw strings by name and turns them into typed values, or raises BadSetting."""

    def __init__(self, values: Mapping[str, str]):
        self._values = values

    def raw(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise BadSetting(f"{name}={value!r} is not allowed: use true or false.")

    def number(
        self,
        name: str,
        default: T,
        convert: Callable[[str], T],
        low: float | None = None,
        high: float | None = None,
    ) -> T:
        value = self.raw(name)
        if value is None:
            return default
        kind = "a whole number" if convert is int else "a number"
        try:
            parsed = convert(value)
        except ValueError:
            parsed = None
        if parsed is None or (low is not None and parsed < low) or (high is not None and parsed > high):
            bounds = ""
            if low is not None and high is not None:
                bounds = f" from {low:g} to {high:g}"
            elif low is not None:
                bounds = f" of at least {low:g}"
            raise BadSetting(f"{name}={value!r} is not allowed: use {kind}{bounds}.")
        return parsed

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in allowed:
            raise BadSetting(f"{name}={value!r} is not allowed: use one of {', '.join(allowed)}.")
        return value.lower()

    def path(self, name: str, must_exist: bool = True) -> Path | None:
        value = self.raw(name)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = ROOT / path
        if must_exist and not path.exists():
            raise BadSetting(
                f"{name}={value!r} is not allowed: no such file or folder ({path}); fix the path or leave it empty."
            )
        return path

    def url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("http://", "https://")):
            raise BadSetting(f"{name}={value!r} is not allowed: use a URL that starts with http:// or https://.")
        return value.rstrip("/")

    def pin_overrides(self) -> dict[str, int]:
        overrides = {}
        for key in sorted(self._values):
            if key.startswith("BILLY_PIN_") and self.raw(key) is not None:
                overrides[key.removeprefix("BILLY_PIN_").lower()] = self.number(key, 0, int, 0, 27)
        return overrides


def read_env(env_file: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Merge `.env` (if present) with the environment; the environment wins."""
    env_file = ROOT / ".env" if env_file is None else env_file
    values: dict[str, str] = {}
    if env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def load_settings(env_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build every subsystem's settings, raising BadSetting on the first bad value."""
    r = _Reader(read_env(env_file, environ))
    port_kw = dict(convert=int, low=1, high=65535)
    models = ModelSettings(
        use_local_models=r.boolean("USE_LOCAL_MODELS", ModelSettings.use_local_models),
        local_llm_host=r.url("LOCAL_LLM_HOST", ModelSettings.local_llm_host),
        local_llm_model=r.text("LOCAL_LLM_MODEL", ModelSettings.local_llm_model),
        local_llm_keep_alive=r.text("LOCAL_LLM_KEEP_ALIVE", ModelSettings.local_llm_keep_alive),
        local_stt_model=r.text("LOCAL_STT_MODEL", ModelSettings.local_stt_model),
        stt_short_window=r.boolean("STT_SHORT_WINDOW", ModelSettings.stt_short_window),
        local_tts_voice=str(r.path("LOCAL_TTS_VOICE") or ""),
        embedded_llm_model=str(r.path("EMBEDDED_LLM_MODEL") or ""),
        embedded_llm_threads=r.number("EMBEDDED_LLM_THREADS", ModelSettings.embedded_llm_threads, int, 0, 64),
        openai_api_key=r.text("OPENAI_API_KEY", ModelSettings.openai_api_key),
        openai_base_url=r.url("OPENAI_BASE_URL", ModelSettings.openai_base_url),
        openai_model=r.text("OPENAI_MODEL", ModelSettings.openai_model),
        openai_stt_model=r.text("OPENAI_STT_MODEL", ModelSettings.openai_stt_model),
        openai_tts_model=r.text("OPENAI_TTS_MODEL", ModelSettings.openai_tts_model),
        openai_tts_voice=r.text("OPENAI_TTS_VOICE", ModelSettings.openai_tts_voice),
        request_timeout_seconds=r.number(
            "REQUEST_TIMEOUT_SECONDS", ModelSettings.request_timeout_seconds, float, 1, 600
        ),
        breaker_cooldown_seconds=r.number(
            "BREAKER_COOLDOWN_SECONDS", ModelSettings.breaker_cooldown_seconds, float, 0, 3600
        ),
    )
    mqtt_host = r.text("MQTT_HOST", "")
    mqtt = MqttSettings(
        host=mqtt_host,
        port=r.number("MQTT_PORT", MqttSettings.port, **port_kw),
        username=r.text("MQTT_USERNAME", MqttSettings.username),
        password=r.text("MQTT_PASSWORD", MqttSettings.password),
        tls=r.boolean("MQTT_TLS", MqttSettings.tls),
        ca_cert=r.path("MQTT_CA_CERT"),
        topic_prefix=r.text("MQTT_TOPIC_PREFIX", MqttSettings.topic_prefix).strip("/"),
        device_id=r.text("MQTT_DEVICE_ID", MqttSettings.device_id),
        device_name=r.text("MQTT_DEVICE_NAME", MqttSettings.device_name),
        discovery_prefix=r.text("MQTT_DISCOVERY_PREFIX", MqttSettings.discovery_prefix).strip("/"),
        publish_turns=r.boolean("MQTT_PUBLISH_TURNS", MqttSettings.publish_turns),
    )
    if any(c in mqtt.topic_prefix for c in "+#") or not mqtt.topic_prefix:
        raise BadSetting(
            f"MQTT_TOPIC_PREFIX={mqtt.topic_prefix!r} is not allowed: use a topic without + or #, like billy."
        )
    if not all(c.isalnum() or c in "_-" for c in mqtt.device_id):
        raise BadSetting(f"MQTT_DEVICE_ID={mqtt.device_id!r} is not allowed: use letters, digits, - and _ only.")
    ha_host = r.raw("HA_HOST")
    home_assistant = HomeAssistantSettings(
        host=r.url("HA_HOST", HomeAssistantSettings.host).rstrip("/") if ha_host else "",
        token=r.text("HA_TOKEN", HomeAssistantSettings.token),
        lang=r.text("HA_LANG", HomeAssistantSettings.lang),
        timeout_seconds=r.number("HA_TIMEOUT_SECONDS", HomeAssistantSettings.timeout_seconds, float, 0.5, 120),
    )
    return Settings(
        audio=AudioSettings(
            mic_preference=r.text("MIC_PREFERENCE", AudioSettings.mic_preference),
            speaker_preference=r.text("SPEAKER_PREFERENCE", AudioSettings.speaker_preference),
            half_duplex_tail_ms=r.number("HALF_DUPLEX_TAIL_MS", AudioSettings.half_duplex_tail_ms, int, 0, 5000),
            sim_output_latency_ms=r.number("SIM_OUTPUT_LATENCY_MS", AudioSettings.sim_output_latency_ms, int, 0, 2000),
        ),
        endpoint=EndpointSettings(
            end_silence_ms=r.number("END_SILENCE_MS", EndpointSettings.end_silence_ms, int, 100, 3000),
            pre_roll_ms=r.number("PRE_ROLL_MS", EndpointSettings.pre_roll_ms, int, 0, 2000),
            min_speech_ms=r.number("MIN_SPEECH_MS", EndpointSettings.min_speech_ms, int, 20, 2000),
            max_utterance_seconds=r.number(
                "MAX_UTTERANCE_SECONDS", EndpointSettings.max_utterance_seconds, float, 1, 300
            ),
            pause_tolerance_ms=r.number("PAUSE_TOLERANCE_MS", EndpointSettings.pause_tolerance_ms, int, 0, 3000),
        ),
        session=SessionSettings(
            run_mode=r.choice("RUN_MODE", SessionSettings.run_mode, ("normal", "dory")),
            mic_timeout_seconds=r.number("MIC_TIMEOUT_SECONDS", SessionSettings.mic_timeout_seconds, float, 0.5, 600),
            follow_up_retry_limit=r.number("FOLLOW_UP_RETRY_LIMIT", SessionSettings.follow_up_retry_limit, int, 0, 20),
            history_max_tokens=r.number("HISTORY_MAX_TOKENS", SessionSettings.history_max_tokens, int, 100, 100000),
        ),
        wake_word=WakeWordSettings(
            enabled=r.boolean("WAKE_WORD_ENABLED", WakeWordSettings.enabled),
            model_path=r.path("WAKE_WORD_MODEL_PATH"),
            threshold=r.number("WAKE_WORD_THRESHOLD", WakeWordSettings.threshold, float, 0.0, 1.0),
            cooldown_seconds=r.number("WAKE_WORD_COOLDOWN_SECONDS", WakeWordSettings.cooldown_seconds, float, 0.0, 600),
        ),
        models=models,
        mqtt=mqtt,
        home_assistant=home_assistant,
        motion=MotionSettings(
            billy_model=r.choice("BILLY_MODEL", MotionSettings.billy_model, ("modern", "classic")),
            pin_layout=r.choice("BILLY_PINS", MotionSettings.pin_layout, ("new", "legacy")),
            pin_overrides=r.pin_overrides(),
            mouth_articulation=r.number("MOUTH_ARTICULATION", MotionSettings.mouth_articulation, int, 0, 10),
            watchdog_seconds=r.number("MOTOR_WATCHDOG_SECONDS", MotionSettings.watchdog_seconds, float, 1, 600),
        ),
        web=_web_settings(r),
        persona=PersonaSettings(
            name=r.text("PERSONA", PersonaSettings.name),
            directory=r.path("PERSONA_DIR") or PersonaSettings.directory,
            allow_update_ini=r.boolean("ALLOW_UPDATE_PERSONALITY_INI", PersonaSettings.allow_update_ini),
        ),
        log_level=r.choice("LOG_LEVEL", Settings.log_level.lower(), ("debug", "info", "warning", "error")).upper(),
        env_file=ROOT / ".env" if env_file is None else Path(env_file),
    )


WEB_PASSWORD_MIN_CHARS = 8


def _web_settings(r: _Reader) -> WebSettings:
    password = r.text("WEB_PASSWORD", WebSettings.password)
    if password and len(password) < WEB_PASSWORD_MIN_CHARS:
        # The value is a secret: the message names the rule, never the value.
        raise BadSetting(
            f"WEB_PASSWORD is too short: use at least {WEB_PASSWORD_MIN_CHARS} characters, "
            "or leave it empty to serve the page on 127.0.0.1 only."
        )
    return WebSettings(
        port=r.number("FLASK_PORT", WebSettings.port, convert=int, low=1, high=65535),
        password=password,
        enabled=r.boolean("WEB_ENABLED", WebSettings.enabled),
        runtime_dir=r.path("WEB_RUNTIME_DIR", must_exist=False) or WebSettings.runtime_dir,
    )
