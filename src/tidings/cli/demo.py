"""``tidings demo``: the e-commerce shop, seven services on one broker, watched live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tidings.brokers import from_url, redact_url
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.errors import ConfigurationError
from tidings.errors import ConnectionError as BrokerConnectionError

if TYPE_CHECKING:  # the shop (and pydantic) load only when the demo runs
    from tidings.examples.shop.config import ShopConfig
    from tidings.examples.shop.system import Shop

__all__ = ["DEMO_DATABASE", "DEMO_OUTBOX", "demo"]

#: The demo's own database, deleted and recreated on every run.
DEMO_DATABASE = Path("tidings-demo.db")
DEMO_OUTBOX = Path("tidings-demo-outbox.jsonl")
#: The order saga's instances (next to the database, see ``shop.config.sagas_for``).
DEMO_SAGAS = Path("tidings-demo-sagas.db")


def demo(
    orders: Annotated[
        int, typer.Option(min=0, help="Orders to place; 0 places orders until Ctrl-C.")
    ] = 500,
    rate: Annotated[
        float, typer.Option(min=0.0, help="Orders per second; 0 places them as fast as possible.")
    ] = 50.0,
    fail_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of payments that are declined.")
    ] = 0.1,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            "-b",
            metavar="URL",
            help="Run on this broker instead, e.g. memory:// or sqlite:///./shop.db. It must "
            "hold no shop events yet (the demo checks itself against the whole log); "
            "TIDINGS_BROKER is ignored.",
        ),
    ] = None,
    headless: Annotated[
        bool,
        typer.Option(
            "--headless",
            help="Plain progress lines instead of the live screen (the default "
            "when stdout is not a terminal).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the order generator.")] = 7,
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="Serve the live dashboard while the shop runs, and after it until Ctrl-C "
            "(needs tidings[gateway]).",
        ),
    ] = False,
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="The dashboard's port (on 127.0.0.1).")
    ] = 8765,
) -> None:
    """Run the e-commerce shop: orders, inventory, payment, shipping, email, analytics, fraud.

    Seven services, each its own App, talk only through events: a saga with
    compensation, retries, a dead-letter topic for poison events, a fraud
    detector that joins late and catches up. A live screen shows counters,
    events per second and consumer lag; at the end the demo checks its
    invariants against the event log and exits 1 if one fails.

    Without --broker it runs on ./tidings-demo.db, which it DELETES and
    recreates on every run (with its -wal/-shm files, the email outbox
    ./tidings-demo-outbox.jsonl and the saga's ./tidings-demo-sagas.db).
    """
    from tidings.examples.shop.config import ShopConfig, outbox_for

    if broker is None:
        url = f"sqlite:///./{DEMO_DATABASE}"
        outbox = DEMO_OUTBOX
        for database in (DEMO_DATABASE, DEMO_SAGAS):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
    else:
        url = broker
        outbox = outbox_for(url) if url.startswith("sqlite:") else DEMO_OUTBOX
        try:
            from_url(url)  # only builds the client (no connection), to vet the URL
        except ConfigurationError as exc:
            raise CommandError(f"--broker: {exc}", EXIT_USAGE) from None
    config = ShopConfig(fail_rate=fail_rate, outbox=outbox)
    logging.getLogger("tidings").setLevel(logging.ERROR)  # the screen tells what happens
    live = not headless and sys.stdout.isatty()
    console = Console(highlight=False, soft_wrap=not live)
    board = _Dashboard(url, port) if dashboard else None
    ran = _demo(url, config, orders, rate, seed, live, console, broker is not None, board)
    if not asyncio.run(ran):
        raise typer.Exit(1)


class _Dashboard:
    """The gateway's dashboard on 127.0.0.1:PORT, in the demo's own event loop."""

    def __init__(self, url: str, port: int) -> None:
        try:
            import uvicorn

            from tidings.gateway import Settings, create_app
        except ImportError:
            raise CommandError(
                "--dashboard needs the gateway: pip install 'tidings[gateway]'", EXIT_USAGE
            ) from None
        self.token = secrets.token_urlsafe(16)
        self.address = f"http://127.0.0.1:{port}/?token={self.token}"
        app = create_app(url, Settings(token=self.token))

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the demo handles Ctrl-C itself
                yield

        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():  # the port is taken, or the app failed to start
                self.task.result()
                raise CommandError("the dashboard could not start (is the port in use?)")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.task is not None:
            self.server.should_exit = True
            await asyncio.gather(self.task, return_exceptions=True)


async def _demo(
    url: str,
    config: ShopConfig,
    orders: int,
    rate: float,
    seed: int,
    live: bool,
    console: Console,
    isolate: bool,
    board: _Dashboard | None = None,
) -> bool:
    from tidings.examples.shop.runner import run_shop
    from tidings.examples.shop.system import Shop

    shop = Shop(url, config=config, seed=seed)
    await _connect(shop, url, isolate)
    if config.outbox is not None:
        config.outbox.unlink(missing_ok=True)  # the demo's own: emails of this run only
    stop = asyncio.Event()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:  # the first Ctrl-C stops placing orders, a second aborts
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        if board is not None:
            await board.start()
            console.print(f"dashboard: {board.address}")
        verdict = await run_shop(shop, orders, rate, console=console, live=live, stop=stop)
        if board is not None and not stop.is_set():
            console.print(f"dashboard: still at {board.address} until Ctrl-C")
            await stop.wait()
    except asyncio.CancelledError:
        raise CommandError("interrupted before the shop settled; nothing was checked") from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if board is not None:
            await board.stop()
    return verdict.ok


async def _connect(shop: Shop, url: str, isolate: bool) -> None:
    """Connect the shop's broker; with ``isolate``, refuse one that holds shop events."""
    from tidings.examples.shop.system import holds_shop_events

    try:
        await shop.broker.connect()
        if isolate and await holds_shop_events(shop.broker):
            raise CommandError(
                f"{redact_url(url)} already holds shop events, and the demo checks its "
                "invariants against the whole log: use a broker (or a database file) "
                "without them, or leave out --broker to run on ./tidings-demo.db, "
                "recreated on every run"
            )
    except (ConfigurationError, BrokerConnectionError) as exc:
        await shop.broker.close()
        raise CommandError(f"cannot use {redact_url(url)}: {exc}") from None
    except BaseException:
        await shop.broker.close()
        raise
