"""The CLI's traffic commands: simulate, replay, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from telemetry.settings import Settings


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.simulate import simulate

    speed = None if args.fast else args.speed
    result = asyncio.run(simulate(args.scenario, settings, speed=speed, seed=args.seed, start=args.start))
    print(result.format())
    return 130 if result.summary.interrupted else 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.simulate import replay

    summary = asyncio.run(replay(Path(args.file), settings, pace="fast" if args.fast else "original", scale=args.scale))
    print(summary.format())
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry.demo import run_demo

    try:
        return asyncio.run(run_demo(settings, speed=args.speed, scenario=args.scenario))
    except KeyboardInterrupt:
        print("\ndemo interrupted; the worker was stopped and the data kept.", file=sys.stderr)
        return 130


def register_simulate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("simulate", help="publish realistic traffic from a scenario file (or a bundled name)")
    p.add_argument("scenario", nargs="?", default="demo", help="scenario TOML path or bundled name (default: demo)")
    p.add_argument("--speed", type=float, default=360.0, help="simulated seconds per second (default 360: a day in 4 min)")
    p.add_argument("--fast", action="store_true", help="publish as fast as possible")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--start", default=None, help="simulated start: RFC 3339, epoch ms, or 'now'")
    p.set_defaults(func=cmd_simulate)


def register_replay(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("replay", help="publish a JSONL capture at its original pace, scaled, or as fast as possible")
    p.add_argument("file")
    p.add_argument("--scale", type=float, default=1.0, help="pace factor: 2 = twice as fast (default 1)")
    p.add_argument("--fast", action="store_true", help="no waiting between events")
    p.set_defaults(func=cmd_replay)


def register_demo(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="broker + worker + a simulated day with incidents, then a summary")
    p.add_argument("--speed", type=float, default=360.0, help="simulated seconds per second (default 360)")
    p.add_argument("--scenario", default="demo", help="scenario TOML path or bundled name")
    p.set_defaults(func=cmd_demo)


def register_report(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from telemetry.reports.cli import register_report as register

    register(sub)


def register_ui(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from telemetry.dashboard.cli import register_ui as register

    register(sub)


REGISTER: list[Callable[[argparse._SubParsersAction], None]] = [  # type: ignore[type-arg]
    register_simulate, register_replay, register_demo, register_report, register_ui,
]  # fmt: skip


def register_gate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from telemetry.gates.cli import register_gate as register

    register(sub)


REGISTER.append(register_gate)
