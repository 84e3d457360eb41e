"""``tidings run --metrics-port``: the app's Prometheus metrics served over HTTP."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from tidings.app import App
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.errors import ConfigurationError

if TYPE_CHECKING:
    from tidings.metrics import Metrics

__all__ = ["MetricsEndpoint"]

#: Seconds between two reads of the consumer lag.
LAG_INTERVAL = 5.0


class MetricsEndpoint:
    """Installs :class:`~tidings.metrics.Metrics` on an app and serves ``/metrics``.

    The HTTP server runs in a thread and only reads the registry; the lag is
    read on the event loop by :meth:`track_lag`.
    """

    def __init__(self, app: App, host: str, port: int) -> None:
        try:
            from tidings.metrics import Metrics
        except ConfigurationError as exc:
            raise CommandError(f"--metrics-port: {exc}", EXIT_USAGE) from None
        from prometheus_client import start_http_server

        self.app = app
        self.metrics: Metrics = Metrics()
        self.metrics.install(app)
        try:
            self._server, self._thread = start_http_server(port, host, self.metrics.registry)
        except OSError as exc:
            raise CommandError(f"--metrics-port: cannot listen on {host}:{port}: {exc}") from None
        self.url = f"http://{host}:{port}/metrics"

    def track_lag(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.metrics.track_lag(self.app, LAG_INTERVAL)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
