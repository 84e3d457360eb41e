"""One service of the cross-process tracing test, run as ``tidings run tracing_service:app``.

``TRACED_SERVICE`` picks the step (``inventory``, ``payments`` or ``processor``);
``TIDINGS_BROKER`` names the shared database. Tracing is set up the way a user
would, with a global SDK tracer provider and no tidings-specific code; the
finished spans are written to ``TRACE_FILE`` (JSON lines) when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tidings import App, Context

# step name -> (topic it reads, event type it emits, topic it emits to)
STEPS = {
    "inventory": ("orders", "InventoryReserved", "inventory"),
    "payments": ("inventory", "PaymentRequested", "payments"),
    "processor": ("payments", "PaymentProcessed", "payments.done"),
}

service = os.environ["TRACED_SERVICE"]
exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": service}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


def _dump() -> None:
    with open(os.environ["TRACE_FILE"], "w") as out:
        for span in exporter.get_finished_spans():
            assert span.context is not None
            out.write(
                json.dumps(
                    {
                        "service": service,
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": span.context.trace_id,
                        "span_id": span.context.span_id,
                        "parent": span.parent.span_id if span.parent else None,
                        "start": span.start_time,
                    }
                )
                + "\n"
            )


atexit.register(_dump)

reads, emits, target = STEPS[service]
app = App(service)


@app.subscribe(reads, group=service)
async def step(ctx: Context) -> None:
    ctx.emit(ctx.event.data, topic=target, type=emits)
