"""Billy's command line. `python main.py --help` lists the commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from core.config import ROOT, Settings, load_settings
from core.errors import BillyError

log = logging.getLogger("billy")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Billy: a local-first voice assistant in a Big Mouth Billy Bass. "
        "Settings come from .env and the environment (see .env.example).",
    )
    parser.add_argument("--env", type=Path, help="read settings from this file instead of ./.env")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run Billy (the default): real mic, speaker and pins where present, simulated where not",
        description="Run Billy. He also starts his page (`web`) and starts it again if it dies.",
    )
    run.add_argument(
        "--no-web",
        action="store_true",
        help="don't start or watch the page: it runs on its own (e.g. its own systemd unit, `main.py web`)",
    )
    sim = sub.add_parser(
        "simulate",
        help="run the real firmware on simulated pins, mic and speaker (WAV in, WAV out)",
        description="Press the virtual button and play each --input WAV into the virtual mic as one user "
        "turn of one session. Writes DIR/speaker.wav, turns.jsonl, events.jsonl and motion.jsonl. "
        "Without --input it keeps running (Enter presses the button; MQTT works when MQTT_HOST is set) "
        "until Ctrl-C or SIGTERM.",
    )
    sim.add_argument("--input", type=Path, action="append", default=[], metavar="WAV", help="a user turn (repeatable)")
    sim.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the output files")
    sim.add_argument(
        "--wake",
        action="store_true",
        help="press no button: each input wakes Billy by itself, starting with the wake word "
        "(needs WAKE_WORD_ENABLED=true), then a pause for the wake-up clip, then the question",
    )

    bench = sub.add_parser(
        "bench",
        help="measure turn latency (and lip sync) over a set of utterances in simulation; prints a table",
    )
    bench.add_argument("--input", type=Path, action="append", default=[], metavar="WAV", help="utterances to use")
    bench.add_argument("--rounds", type=int, default=1, help="times to run the set (default 1)")
    bench.add_argument("--out", type=Path, default=None, metavar="DIR", help="keep the simulation outputs here")

    sing = sub.add_parser("sing", help="play an installed song with the fish dancing (`sing --list` lists them)")
    sing.add_argument("name", nargs="?", help="song folder name, title or keyword")
    sing.add_argument("--list", action="store_true", help="list the installed songs")
    sing.add_argument("--simulate", action="store_true", help="use the simulated speaker and pins")

    sub.add_parser("motor-test", help="move each motor in turn to check the wiring")
    evaluate = sub.add_parser(
        "eval-tools",
        help="run our spoken-command cases through Billy's real turn and score what he does",
        description="Each case of core/dev/tooleval_cases.jsonl goes through the real turn (templates, "
        "Home Assistant, the brain Billy would use, the reply guard) with a simulated Home Assistant, "
        "throwaway copies of the personas and songs, and nothing played. Prints each case, then "
        "precision and recall per tool, who decided, the time to decision and every guard rejection.",
    )
    evaluate.add_argument(
        "--spoken", action="store_true", help="say each case with piper and run it on what Whisper hears"
    )
    evaluate.add_argument(
        "--no-home", action="store_true", help="run without Home Assistant (smart-home cases then expect no tool)"
    )
    evaluate.add_argument("--cases", type=Path, default=None, metavar="FILE", help="another case file (JSON lines)")
    evaluate.add_argument("--limit", type=int, default=0, metavar="N", help="run only the first N cases")
    sub.add_parser(
        "check",
        help="the doctor: try every part (mic, speaker, pins, models, broker, Home Assistant, cloud) "
        "and say what to fix; exit status 1 if anything is wrong",
    )
    sub.add_parser(
        "web",
        help="run Billy's page alone (`run` starts it by itself); it talks to a running Billy",
        description="Serve Billy's page on FLASK_PORT (127.0.0.1 only unless WEB_PASSWORD is set). "
        "It connects to the running Billy, and can start him when he is down. Exits at once if a page already runs.",
    )
    return parser


def _setup_logging(settings: Settings | None, verbose: bool) -> None:
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level if settings else "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore", "faster_whisper", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.env)
    except BillyError as exc:
        _setup_logging(None, args.verbose)
        print(f"billy: bad setting: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings, args.verbose)
    command = args.command or "run"
    if command == "web":
        from core.web.serve import run_page

        return run_page(settings)
    try:
        return asyncio.run(_dispatch(command, args, settings))
    except BillyError as exc:
        print(f"billy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _dispatch(command: str, args: argparse.Namespace, settings: Settings) -> int:
    if command == "simulate":
        from core.dev.simulate import simulate

        return await simulate(settings, args.input, args.out, wake=args.wake)
    if command == "bench":
        from core.dev.bench import run_bench

        return await run_bench(settings, args.input, args.rounds, args.out)
    if command == "run":
        return await _run(settings, page=not getattr(args, "no_web", False))
    if command == "sing":
        from core.dev.sing import sing

        return await sing(settings, args.name, args.list, args.simulate)
    if command == "motor-test":
        from core.body.pins import pin_factory
        from core.dev.motortest import run_motor_test

        factory, simulated = pin_factory(simulate=False)
        if simulated:
            print("No GPIO on this machine: testing the motors on simulated pins.")
        return run_motor_test(settings.motion, pin_factory=factory)
    if command == "eval-tools":
        return await _eval_tools(settings, args)
    if command == "check":
        from core.dev.check import check

        return await check(settings)
    raise AssertionError(command)


async def _eval_tools(settings: Settings, args: argparse.Namespace) -> int:
    """Score what Billy does with our cases, on the brain he would use (Ollama if it answers, else the fallbacks)."""
    from core.app import build_brain, build_transcriber
    from core.dev.evalrun import run_eval
    from core.dev.tooleval import CASES_PATH

    if not args.verbose:  # one line per case, not the turn's own log lines
        logging.getLogger("core").setLevel(logging.WARNING)
    report = await run_eval(
        settings,
        build_brain,
        build_transcriber if args.spoken else None,
        home=not args.no_home,
        cases_path=args.cases or CASES_PATH,
        limit=args.limit,
        on_case=lambda line: print(line, flush=True),
    )
    print(report.format(cases=False))
    return 0


async def _run(settings: Settings, page: bool = True) -> int:
    from core.app import Billy, make_devices, restart_process
    from core.systemd import Notifier
    from core.web.processes import hold_voice_lock

    hold_voice_lock(settings.web.runtime_dir)  # one Billy at a time: two would fight over the pins
    # Under systemd (Type=notify): READY once warm, STATUS per state, watchdog pings from this
    # loop. Outside a unit, a no-op.
    notifier = Notifier.from_environment()
    notifier.start_watchdog()
    notifier.status("starting: loading models")
    devices = make_devices(settings, simulate=False)
    if devices.simulated_audio:
        log.info("no sound card found: Billy runs in simulation (his voice goes to sim-out/speaker.wav)")
    billy = Billy(settings, devices)
    if settings.web.enabled:
        from core.web.link import PageLink

        billy.page = PageLink(settings, supervise=page)
    billy.state.subscribe(notifier.on_state)
    started = time.monotonic()
    failure = ""
    try:
        await billy.start()
        notifier.ready("idle (ready)")
        await billy.run()
    except BillyError as exc:
        failure = f"failed: {exc}"
        raise
    finally:
        if billy.restart_requested:
            notifier.reloading()
        else:
            notifier.stopping(failure or "stopping")
        await billy.close()
        if devices.simulated_audio:
            out = ROOT / "sim-out"
            out.mkdir(exist_ok=True)
            devices.speaker.write_wav(out / "speaker.wav", started)  # type: ignore[attr-defined]
    if billy.restart_requested:
        restart_process()
    return 0


if __name__ == "__main__":
    sys.exit(main())
