"""Tool-use evaluation: how often the configured brain picks the right tool with the right arguments.

Each case in `tooleval_cases.jsonl` is one user sentence with the tool expected (or none) and
matchers for its key arguments. Calls are resolved the way a turn resolves them (lenient
parsing, text-written calls included) but never run: nothing is played, switched or saved.

Case format, one JSON object per line:
    {"say": "set your humor to ninety percent", "tool": "update_personality", "args": {"humor": 90}}
Argument matchers: a value (equal, case-insensitive for text), {"min": a, "max": b},
{"contains": ["kitchen", "light"]} (all words, any case), {"any": true} (present),
{"more": true} / {"less": true} (a trait above / below the persona's current value).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.brains.toolparse import TextToolCallFilter
from core.config import HomeAssistantSettings
from core.errors import BackendError
from core.home.homeassistant import HomeAssistantClient
from core.interfaces import Brain, BrainDone, TextDelta, ToolCall
from core.persona.store import PersonaStore
from core.talk.tools import ResolvedCall, ToolRegistry

CASES_PATH = Path(__file__).with_name("tooleval_cases.jsonl")
CASE_TIMEOUT_S = 120.0
"""Longest wait (seconds) for one case; a brain that hangs fails the case, not the run."""


@dataclass(frozen=True)
class EvalCase:
    say: str
    tool: str | None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseResult:
    case: EvalCase
    tool: str | None
    """The tool the brain called (after name normalization), None for no call."""
    arguments: dict[str, Any] | str | None
    right_tool: bool
    right_args: bool
    seconds: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.right_tool and self.right_args


@dataclass
class EvalReport:
    brain: str
    results: list[CaseResult] = field(default_factory=list)
    skipped: list[EvalCase] = field(default_factory=list)
    """Cases whose tool the registry does not offer (smart_home_command without Home Assistant)."""

    @property
    def accuracy(self) -> float:
        """Share of cases with the right tool and right key arguments (0–1)."""
        return sum(r.passed for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def tool_accuracy(self) -> float:
        """Share of cases with the right tool, arguments aside (0–1)."""
        return sum(r.right_tool for r in self.results) / len(self.results) if self.results else 0.0

    def format(self) -> str:
        lines = [f"Tool-use evaluation of {self.brain}: {len(self.results)} cases"]
        for r in self.results:
            mark = "PASS" if r.passed else "FAIL"
            expected = r.case.tool or "no tool"
            got = "no tool" if r.tool is None else f"{r.tool} {json.dumps(r.arguments, ensure_ascii=False)}"
            note = f"  ({r.note})" if r.note else ""
            lines.append(f"{mark} {r.seconds:5.1f}s  {r.case.say!r}: expected {expected}, got {got}{note}")
        passed = sum(r.passed for r in self.results)
        lines.append(
            f"Accuracy: {passed}/{len(self.results)} = {self.accuracy:.0%} (right tool: {self.tool_accuracy:.0%})"
        )
        if self.skipped:
            tools = ", ".join(sorted({str(c.tool) for c in self.skipped}))
            lines.append(f"Skipped {len(self.skipped)} cases whose tool is not offered ({tools}).")
        return "\n".join(lines)


def load_cases(path: Path = CASES_PATH) -> list[EvalCase]:
    """Read the cases; a bad line raises ValueError naming the file and line."""
    cases = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
            cases.append(EvalCase(say=data["say"], tool=data.get("tool"), args=data.get("args", {})))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number} is not a valid case ({exc}).") from exc
    return cases


def matches(expected: Any, actual: Any, current: Any = None) -> bool:
    """Whether one argument value meets its matcher (see the module docstring); `current` is the value before."""
    if isinstance(expected, dict):
        if expected.get("any"):
            return actual is not None
        if expected.get("more") or expected.get("less"):
            if not isinstance(actual, int | float) or not isinstance(current, int | float):
                return False
            return actual > current if expected.get("more") else actual < current
        if "contains" in expected:
            text = str(actual).lower()
            return actual is not None and all(word.lower() in text for word in expected["contains"])
        if "min" in expected or "max" in expected:
            if not isinstance(actual, int | float) or isinstance(actual, bool):
                return False
            return expected.get("min", float("-inf")) <= actual <= expected.get("max", float("inf"))
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().lower() == actual.strip().lower()
    return expected == actual


async def _first_call(brain: Brain, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ToolCall | None:
    text_calls = TextToolCallFilter(tools)
    found: ToolCall | None = None
    async for event in brain.chat(messages, tools):
        if isinstance(event, ToolCall) and found is None:
            found = event
        elif isinstance(event, TextDelta):
            _, calls = text_calls.feed(event.text)
            found = found or (calls[0] if calls else None)
        elif isinstance(event, BrainDone):
            break
    _, calls = text_calls.flush()
    return found or (calls[0] if calls else None)


async def run_case(brain: Brain, system_prompt: str, registry: ToolRegistry, case: EvalCase) -> CaseResult:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": case.say}]
    start = time.monotonic()
    try:
        call = await asyncio.wait_for(_first_call(brain, messages, registry.schemas()), CASE_TIMEOUT_S)
    except (BackendError, TimeoutError) as exc:
        seconds = time.monotonic() - start
        return CaseResult(case, None, None, False, False, seconds, f"brain failed: {exc}")
    seconds = time.monotonic() - start
    if call is None:
        ok = case.tool is None
        return CaseResult(case, None, None, ok, ok, seconds)
    resolved = registry.resolve(call)
    if isinstance(resolved, str):
        right_tool = call.name == case.tool
        return CaseResult(case, call.name, call.arguments, right_tool, False, seconds, resolved)
    return _score(case, resolved, seconds, registry.personas.current().traits)


def _score(case: EvalCase, resolved: ResolvedCall, seconds: float, traits: dict[str, int]) -> CaseResult:
    right_tool = resolved.name == case.tool
    missing = [
        key for key, want in case.args.items() if not matches(want, resolved.arguments.get(key), traits.get(key))
    ]
    note = f"wrong or missing: {', '.join(missing)}" if right_tool and missing else ""
    return CaseResult(case, resolved.name, resolved.arguments, right_tool, right_tool and not missing, seconds, note)


async def run_tool_eval(
    brain: Brain, system_prompt: str, registry: ToolRegistry, cases_path: Path = CASES_PATH
) -> EvalReport:
    """Run every case through `brain`, one after another, and score it."""
    report = EvalReport(brain=getattr(brain, "name", type(brain).__name__))
    offered = set(registry.names())
    for case in load_cases(cases_path):
        if case.tool is not None and case.tool not in offered:
            report.skipped.append(case)
            continue
        report.results.append(await run_case(brain, system_prompt, registry, case))
    return report


def registry_for_eval(personas: PersonaStore, song_titles: Callable[[], list[str]]) -> ToolRegistry:
    """A registry offering all four tools, Home Assistant included even when HA_HOST is unset.

    Safe because the evaluation only resolves calls and never runs them.
    """
    placeholder = HomeAssistantClient(HomeAssistantSettings(host="http://homeassistant.invalid", token="unused"))
    return ToolRegistry(personas, song_titles, placeholder)
