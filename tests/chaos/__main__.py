"""``python -m tests.chaos``: one chaos run, its result table, exit 1 if a check failed."""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import get_args

from rich.console import Console

from .config import DEFAULT_MIX, Delivery, RunConfig, parse_mix
from .report import table
from .runner import run


def _parser() -> argparse.ArgumentParser:
    default_mix = ",".join(f"{kind}={n}" for kind, n in DEFAULT_MIX.items())
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Producers and consumers of one group under a nemesis; then check.",
    )
    parser.add_argument("--broker", help="broker URL (default: a fresh sqlite file)")
    parser.add_argument("--delivery", choices=get_args(Delivery), default="at_least_once")
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=300.0, help="chaos phase (300)")
    parser.add_argument("--seed", type=int, help="default: random (printed)")
    parser.add_argument(
        "--nemesis",
        default=default_mix,
        help=f"weights per action, 'all' or 'none' ({default_mix})",
    )
    parser.add_argument("--actions", type=int, help="at most this many actions")
    parser.add_argument(
        "--interval",
        type=float,
        nargs=2,
        default=(0.5, 3.0),
        metavar=("MIN", "MAX"),
        help="seconds between actions (0.5 3)",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=1.5,
        help="the broker's session timeout: of the default URL, and pauses last 1.5-2.5 times it",
    )
    parser.add_argument("--keys", type=int, default=27)
    parser.add_argument("--rate", type=float, default=40.0, help="events/s per producer (40)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--work", type=float, default=0.002, help="seconds per handling (0.002)")
    parser.add_argument("--quiet-timeout", type=float, default=120.0)
    parser.add_argument("--workdir", type=Path, help="logs and database (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir after a pass")
    parser.add_argument("--verbose", action="store_true", help="list every nemesis action")
    return parser


def main() -> None:
    args = _parser().parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tidings-chaos-"))
    config = RunConfig(
        workdir=workdir,
        broker_url=args.broker,
        delivery=args.delivery,
        producers=args.producers,
        consumers=args.consumers,
        seconds=args.seconds,
        seed=args.seed if args.seed is not None else random.randrange(1_000_000),
        mix=parse_mix(args.nemesis),
        max_actions=args.actions,
        interval=(args.interval[0], args.interval[1]),
        session_timeout=args.session_timeout,
        keys=args.keys,
        rate=args.rate,
        concurrency=args.concurrency,
        work=args.work,
        quiet_timeout=args.quiet_timeout,
    )
    console = Console()
    console.print(f"chaos: seed {config.seed}, {config.seconds:g} s, logs in {workdir}")
    result = asyncio.run(run(config))
    if args.verbose:
        for action in result.actions:
            console.print(
                f"{action.at:7.2f} s  {action.kind:15} {action.victim:7} {action.seconds:5.2f} s"
                f"  (unix {action.wall:.3f}, pid {action.pid})"
            )
    console.print(table(result))
    for problem in result.problems():
        console.print(f"[red]problem:[/red] {problem}", markup=True, highlight=False)
    if result.ok and not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not result.ok:
        console.print(f"logs kept in {workdir}")
    sys.exit(0 if result.ok else 1)


main()
