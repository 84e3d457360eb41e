"""``tidings run MODULE:APP``: serve an App until Ctrl-C or SIGTERM, then drain."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from tidings.app import App
from tidings.cli._errors import EXIT_USAGE, CommandError, stderr
from tidings.cli._metrics import MetricsEndpoint
from tidings.cli._options import BrokerOption, given_on_command_line
from tidings.cli._processes import child_command, reload_forever, supervise
from tidings.cli._target import load_app
from tidings.errors import ConfigurationError, SubscriptionFailedError
from tidings.logs import JsonFormatter

__all__ = ["run"]

log = logging.getLogger("tidings.cli")

_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMATS = ("text", "json")


def run(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:APP",
            help="The App to run, e.g. shop.orders:app (APP defaults to 'app').",
            show_default=False,
        ),
    ],
    broker: BrokerOption = None,
    log_level: Annotated[
        str,
        typer.Option(help=f"Logging level: {', '.join(_LOG_LEVELS)}.", metavar="LEVEL"),
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            help="Log lines as text, or as one JSON object each: text, json.", metavar="FORMAT"
        ),
    ] = "text",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port at /metrics.", metavar="PORT"),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address the metrics server listens on.", metavar="HOST")
    ] = "127.0.0.1",
    factory: Annotated[
        bool, typer.Option("--factory", help="APP is a function that returns the App.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Run N processes of the app (members of its groups), supervised.",
            metavar="N",
            min=1,
        ),
    ] = 1,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload", help="Restart when a .py file under the current directory changes."
        ),
    ] = False,
) -> None:
    """Run an App until Ctrl-C or SIGTERM, then let in-flight handlers finish.

    --broker replaces the broker the app names; an app that names none uses
    TIDINGS_BROKER. --workers N runs N processes (worker i serves metrics on
    PORT+i); --reload is for development.
    """
    level = log_level.lower()
    if level not in _LOG_LEVELS:
        raise CommandError(
            f"--log-level must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}", EXIT_USAGE
        )
    if log_format not in _LOG_FORMATS:
        raise CommandError(
            f"--log-format must be one of {', '.join(_LOG_FORMATS)}, not {log_format!r}",
            EXIT_USAGE,
        )
    if workers > 1 or reload:
        options = ["--log-level", level, "--log-format", log_format]
        if broker is not None and given_on_command_line(ctx, "broker"):
            options += ["--broker", broker]
        if factory:
            options.append("--factory")
        raise typer.Exit(_in_children(target, options, workers, reload, metrics_port, factory))
    app = load_app(target, factory)
    # TIDINGS_BROKER is already the default of an app that names no broker; only an
    # explicit --broker overrides a broker named in code, as app.run() would not.
    if broker is not None and given_on_command_line(ctx, "broker"):
        try:
            app.set_broker(broker)
        except ConfigurationError as exc:
            raise CommandError(f"--broker: {exc}", EXIT_USAGE) from None
    _configure_logging(level, log_format)
    if log_format == "text":
        _run(app, stderr().print, metrics_host, metrics_port)
        return
    try:
        _run(app, _say_as_json, metrics_host, metrics_port)
    except CommandError as exc:
        log.error(exc.message)  # as JSON too: every line on stderr stays JSON
        raise typer.Exit(exc.exit_code) from None


def _in_children(
    target: str,
    options: list[str],
    workers: int,
    reload: bool,
    metrics_port: int | None,
    factory: bool,
) -> int:
    if reload and workers > 1:
        raise CommandError("--reload runs one process: leave out --workers", EXIT_USAGE)
    if reload:
        metrics = [] if metrics_port is None else ["--metrics-port", str(metrics_port)]
        return reload_forever(child_command(target, [*options, *metrics]), Path.cwd())
    app = load_app(target, factory)  # refuse a wrong target before starting anything
    broker = _broker_name(app)
    if broker.startswith("memory:"):
        raise CommandError(
            f"--workers needs a broker the processes share; {broker} lives in one process",
            EXIT_USAGE,
        )
    commands = []
    for n in range(workers):
        metrics = [] if metrics_port is None else ["--metrics-port", str(metrics_port + n)]
        commands.append(child_command(target, [*options, *metrics]))
    return supervise(commands)


def _run(
    app: App, say: Callable[[Text], None], metrics_host: str, metrics_port: int | None
) -> None:
    endpoint = None
    if metrics_port is not None:
        endpoint = MetricsEndpoint(app, metrics_host, metrics_port)
    try:
        asyncio.run(_serve(app, say, endpoint))
    except SubscriptionFailedError as exc:
        raise CommandError(f"{exc}; the app was stopped") from None
    finally:
        if endpoint is not None:
            endpoint.close()


def _configure_logging(level: str, log_format: str) -> None:
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler])
    else:
        logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")


def _say_as_json(text: Text) -> None:
    """With JSON logs every stderr line is JSON: the status lines become log records."""
    log.info(text.plain)


async def _serve(app: App, say: Callable[[Text], None], endpoint: MetricsEndpoint | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before start so a signal that arrives while starting still drains;
    # App.serve installs the same handlers again for the running phase.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    draining = asyncio.create_task(_say_draining(app, stop, say))
    try:
        await app.start()
        say(_started(app))
        if endpoint is not None:
            say(Text(f"tidings: metrics on {endpoint.url}"))
        lag = contextlib.nullcontext() if endpoint is None else endpoint.track_lag()
        async with lag:
            await app.serve(stop)
    finally:
        draining.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    say(_stopped(app))


async def _say_draining(app: App, stop: asyncio.Event, say: Callable[[Text], None]) -> None:
    """On the first signal, say what the stop waits for (it may take seconds)."""
    await stop.wait()
    say(
        Text(
            f"tidings: stopping: draining {app.in_flight} event(s) in flight "
            "(Ctrl-C again cancels the running handlers; their events come back)"
        )
    )


def _broker_name(app: App) -> str:
    return app.broker_url or type(app.broker).__name__


def _started(app: App) -> Text:
    subscriptions = app.subscriptions
    if subscriptions:
        listed = "; ".join(f"{s.name} <- {', '.join(s.topics)}" for s in subscriptions)
    else:
        listed = "none"
    return Text.assemble(
        ("tidings:", "bold green"),
        f" app {app.name!r} running on {_broker_name(app)}"
        f" | {len(subscriptions)} subscription(s): {listed}"
        " | press Ctrl-C to stop",
    )


def _counter(value: object) -> str:
    if isinstance(value, dict):  # per type: OrderPaid=2 Refund=1
        return " ".join(f"{key}={count}" for key, count in value.items())
    return str(value)


def _stopped(app: App) -> Text:
    parts = []
    for name, stats in app.stats().items():
        counters = ", ".join(
            f"{field.replace('_', '-')} {_counter(value)}"
            for field, value in dataclasses.asdict(stats).items()
            if value != {}
        )
        parts.append(f"{name}: {counters}")
    return Text.assemble(
        ("tidings:", "bold green"),
        f" app {app.name!r} stopped | {'; '.join(parts) or 'no subscriptions'}",
    )
