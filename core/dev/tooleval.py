"""Tool evaluation: what Billy does with each of our sentences, scored, and the report `eval-tools` prints.

Each case in `tooleval_cases.jsonl` is one thing a person says to the fish, with the tool Billy
should end up calling (or none) and matchers for what that call must carry. The cases were
written the way people talk, not from Billy's sentence templates. `core/dev/evalrun.py` runs
each case through Billy's real turn (understanding, Home Assistant, the brain and its guard);
this module holds the cases, the matchers, the scoring and the report, and needs no model.

Case format, one JSON object per line (lines starting with `#` are section titles):

    {"say": "be a bit funnier", "tool": "update_personality", "args": {"humor": {"more": true}}}
    {"say": "lock the back door", "tool": "smart_home_command",
     "args": {"prompt": {"contains": ["back door"]}}, "result": {"contains": ["locking"]},
     "home": {"lock.back_door": "locked"}}
    {"say": "should I lock the back door?", "tool": null}

- `tool`: the tool the turn must record first (`null`: none, and Billy must not act).
- `args`: matchers per argument. For `update_personality` they judge the persona's traits
  after the turn, and no trait the case does not name may change; for `play_song` the song
  Billy actually starts; for `smart_home_command` the forwarded words (`prompt`).
- `result`: a matcher for Home Assistant's answer (smart_home_command only).
- `home`: entity states the simulated home must be in after the turn.
Without Home Assistant (`--no-home`) a smart-home case expects no tool (Billy says he is not
connected) and `result`/`home` are not checked. With it, a case that expects no smart-home
command must leave the home as it was.

Matchers: a value (equal; text case-insensitive), `{"min": a, "max": b}` (a number in range,
either bound optional), `{"contains": ["kitchen", "light"]}` (all these, any case),
`{"any": true}` (present), `{"more": true}` / `{"less": true}` (above / below the value
before the turn).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CASES_PATH = Path(__file__).with_name("tooleval_cases.jsonl")
TOOLS = ("update_personality", "play_song", "smart_home_command", "end_conversation")
NO_TOOL = "no tool"
_KEYS = {"say", "tool", "args", "result", "home"}


@dataclass(frozen=True)
class EvalCase:
    say: str
    tool: str | None
    args: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    """Matcher for Home Assistant's answer; None: not checked."""
    home: dict[str, str] = field(default_factory=dict)
    """Entity states the simulated home must be in after the turn."""

    def expected_tool(self, home: bool) -> str | None:
        """The tool this case expects when Home Assistant is (or is not) set up."""
        return None if self.tool == "smart_home_command" and not home else self.tool


def load_cases(path: Path = CASES_PATH) -> list[EvalCase]:
    """Read the cases; a bad line raises ValueError naming the file and line."""
    cases = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
            unknown = set(data) - _KEYS
            if unknown or not isinstance(data["say"], str) or not data["say"].strip():
                raise ValueError(f"unknown keys {sorted(unknown)}" if unknown else "no words to say")
            tool = data.get("tool")
            if tool is not None and tool not in TOOLS:
                raise ValueError(f"{tool!r} is not a tool; use one of {', '.join(TOOLS)} or null")
            cases.append(
                EvalCase(
                    data["say"], tool, dict(data.get("args") or {}), data.get("result"), dict(data.get("home") or {})
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{number} is not a valid case ({exc}).") from exc
    return cases


def matches(expected: Any, actual: Any, current: Any = None) -> bool:
    """Whether one value meets its matcher (see the module docstring); `current` is the value before the turn."""
    if isinstance(expected, dict):
        if expected.get("any"):
            return actual is not None
        if expected.get("more") or expected.get("less"):
            if not _number(actual) or not _number(current):
                return False
            return actual > current if expected.get("more") else actual < current
        if "contains" in expected:
            text = str(actual).lower()
            return actual is not None and all(str(word).lower() in text for word in expected["contains"])
        if "min" in expected or "max" in expected:
            return _number(actual) and expected.get("min", float("-inf")) <= actual <= expected.get("max", float("inf"))
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().lower() == actual.strip().lower()
    return expected == actual


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Observed:
    """What one turn did, as the real path recorded it."""

    text: str
    """The words the turn ran on (the transcript, when spoken)."""
    decided_by: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    """Each recorded tool call: name, arguments, result, decided_by."""
    reply: str = ""
    guard: list[str] = field(default_factory=list)
    """Sentences the guard kept from being spoken, each with its reason."""
    decision_ms: float | None = None
    traits_before: dict[str, int] = field(default_factory=dict)
    traits_after: dict[str, int] = field(default_factory=dict)
    song: str | None = None
    """Title of the song the turn started."""
    ended: bool = False
    """The turn ended the conversation."""
    home_before: dict[str, str] | None = None
    home_after: dict[str, str] | None = None
    leaks: list[str] = field(default_factory=list)
    """Sentences of the final reply that fail the guard's checks."""
    error: str = ""

    @property
    def tool(self) -> str | None:
        return self.calls[0]["name"] if self.calls else None


@dataclass
class CaseResult:
    case: EvalCase
    observed: Observed
    expected: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def right_tool(self) -> bool:
        return self.observed.tool == self.expected and not self.observed.error

    @property
    def passed(self) -> bool:
        return self.right_tool and not self.problems


def score(case: EvalCase, seen: Observed, home: bool) -> CaseResult:
    """Judge one turn against its case: the tool, its arguments, and what it did."""
    expected = case.expected_tool(home)
    result = CaseResult(case, seen, expected)
    problems = result.problems
    if seen.error:
        problems.append(seen.error)
    if len(seen.calls) > 1:
        problems.append("several tools: " + ", ".join(c["name"] for c in seen.calls))
    changed = {t for t, v in seen.traits_after.items() if seen.traits_before.get(t) != v}
    if expected == "update_personality":
        for trait, want in case.args.items():
            if not matches(want, seen.traits_after.get(trait), seen.traits_before.get(trait)):
                problems.append(f"{trait} {seen.traits_before.get(trait)} -> {seen.traits_after.get(trait)}")
        if stray := sorted(changed - set(case.args)):
            problems.append("also changed " + ", ".join(stray))
    elif changed:
        problems.append("changed the persona: " + ", ".join(sorted(changed)))
    if expected == "play_song":
        if not matches(case.args.get("song", {"any": True}), seen.song):
            problems.append(f"played {seen.song!r}")
    elif seen.song is not None:
        problems.append(f"played {seen.song!r}")
    if (expected == "end_conversation") != seen.ended:
        problems.append("ended the conversation" if seen.ended else "did not end the conversation")
    if expected == "smart_home_command" and seen.tool == expected:
        call = seen.calls[0]
        arguments = call["arguments"] if isinstance(call["arguments"], dict) else {}
        for key, want in case.args.items():
            if not matches(want, arguments.get(key)):
                problems.append(f"{key} was {arguments.get(key)!r}")
        if case.result is not None and not matches(case.result, call["result"]):
            problems.append(f"Home Assistant answered {call['result']!r}")
    if home and seen.home_after is not None:
        if expected == "smart_home_command":
            wrong = {k: seen.home_after.get(k) for k, v in case.home.items() if seen.home_after.get(k) != v}
            problems.extend(f"{k} is {v}, not {case.home[k]}" for k, v in wrong.items())
        elif seen.home_before is not None and seen.home_after != seen.home_before:
            moved = sorted(k for k, v in seen.home_after.items() if seen.home_before.get(k) != v)
            problems.append("changed the home: " + ", ".join(moved))
    return result


@dataclass
class EvalReport:
    brain: str
    home: bool
    spoken: bool
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        """Share of cases right in every respect (0-1)."""
        return sum(r.passed for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def tool_accuracy(self) -> float:
        """Share of cases with the right tool, arguments aside (0-1)."""
        return sum(r.right_tool for r in self.results) / len(self.results) if self.results else 0.0

    def per_tool(self) -> dict[str, dict[str, float]]:
        """For each tool and "no tool": expected, predicted, right tool, right in full, precision, recall."""
        table: dict[str, dict[str, float]] = {}
        for label in (*TOOLS, NO_TOOL):
            expected = [r for r in self.results if (r.expected or NO_TOOL) == label]
            predicted = [r for r in self.results if (r.observed.tool or NO_TOOL) == label]
            hits = [r for r in expected if (r.observed.tool or NO_TOOL) == label]
            if not expected and not predicted:
                continue
            table[label] = {
                "expected": len(expected),
                "predicted": len(predicted),
                "hits": len(hits),
                "passed": sum(r.passed for r in expected),
                "precision": len(hits) / len(predicted) if predicted else float("nan"),
                "recall": len(hits) / len(expected) if expected else float("nan"),
            }
        return table

    def decided_by(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            key = r.observed.decided_by or "none"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def decision_times(self, decided_by: str | None = None) -> list[float]:
        return [
            r.observed.decision_ms
            for r in self.results
            if r.observed.decision_ms is not None and decided_by in (None, r.observed.decided_by)
        ]

    def title(self, count: int | None = None) -> str:
        mode = "spoken (piper -> Whisper)" if self.spoken else "text"
        home = "simulated Home Assistant" if self.home else "no Home Assistant"
        return f"Tool evaluation, {mode}, {home}: {len(self.results) if count is None else count} cases"

    def format_case(self, r: CaseResult) -> str:
        seen = r.observed
        mark = "PASS" if r.passed else "FAIL"
        ms = f"{seen.decision_ms:7.0f} ms" if seen.decision_ms is not None else "      - ms"
        want = r.expected or NO_TOOL
        if r.expected and r.case.args and (r.expected != "smart_home_command" or self.home):
            want += " " + json.dumps(r.case.args, ensure_ascii=False)
        line = f"{mark} {seen.decided_by or '-':14} {ms}  {r.case.say!r}: expected {want}; got {_got(seen)}"
        if r.passed:
            return line
        extra = [f"  problems: {'; '.join(r.problems)}"] if r.problems else []
        if self.spoken:
            extra.append(f"  heard: {seen.text!r}")
        extra.append(f"  reply: {seen.reply!r}")
        return "\n".join([line, *extra])

    def format(self, cases: bool = True) -> str:
        """The report: each case (unless `cases` is False), then the tables and figures."""
        lines = [self.title(), ""]
        if cases:
            lines += [*(self.format_case(r) for r in self.results), ""]
        lines += [
            f"{'tool':20} {'expected':>8} {'predicted':>9} {'right':>6} {'in full':>7} {'precision':>9} {'recall':>7}"
        ]
        for label, row in self.per_tool().items():
            lines.append(
                f"{label:20} {row['expected']:8.0f} {row['predicted']:9.0f} {row['hits']:6.0f} {row['passed']:7.0f} "
                f"{_pct(row['precision']):>9} {_pct(row['recall']):>7}"
            )
        passed = sum(r.passed for r in self.results)
        lines += [
            "",
            f"Accuracy: {passed}/{len(self.results)} = {self.accuracy:.1%} right in full "
            f"(right tool: {self.tool_accuracy:.1%})",
            "Decided by: " + ", ".join(f"{k} {v}" for k, v in sorted(self.decided_by().items())),
            "Time to decision (ms):",
        ]
        for who in ("templates", "home assistant", "brain", None):
            times = self.decision_times(who)
            if times:
                lines.append(
                    f"  {who or 'all':15} median {_median(times):6.0f}  p90 {_p90(times):6.0f}  (n={len(times)})"
                )
        rejections = [(r, g) for r in self.results for g in r.observed.guard]
        lines.append(f"Guard rejections: {len(rejections) or 'none'}")
        lines += [f"  {r.observed.text!r}: {g}" for r, g in rejections]
        leaks = [(r, leak) for r in self.results for leak in r.observed.leaks]
        lines.append(f"Replies that leaked: {len(leaks) or 'none'}")
        lines += [f"  {r.observed.text!r}: {leak}" for r, leak in leaks]
        lines.append(f"Brain: {self.brain}")
        lines.append(f"Run time: {self.seconds:.0f} s")
        return "\n".join(lines)


def _got(seen: Observed) -> str:
    if seen.error and not seen.calls:
        return f"an error ({seen.error})"
    if not seen.calls:
        return NO_TOOL
    call = seen.calls[0]
    shown = json.dumps(call["arguments"], ensure_ascii=False) if call["arguments"] else ""
    if call["name"] == "play_song":
        shown = json.dumps({"song": seen.song}, ensure_ascii=False)
    elif call["name"] == "update_personality":
        changes = {
            t: f"{seen.traits_before.get(t)}->{v}"
            for t, v in seen.traits_after.items()
            if seen.traits_before.get(t) != v
        }
        shown = json.dumps(changes, ensure_ascii=False)
    elif call["name"] == "smart_home_command":
        shown += f" -> {call['result']!r}"
    return f"{call['name']} {shown}".rstrip()


def _pct(value: float) -> str:
    return "-" if value != value else f"{value:.0%}"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _p90(values: list[float]) -> float:
    """Nearest rank: the smallest value at or above 90 % of the values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
