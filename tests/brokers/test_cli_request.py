"""``tidings request``: a real CLI process asking an App that answers, on each broker a
process can reach (the embedded one, NATS, a Kafka-protocol server)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from _nats_server import system_url
from kafka_server import TEST_OPTIONS, Tansu, tansu  # noqa: F401 - fixture

import tidings
from tidings import App, Reject

#: This tree's sources, first on the CLI process's path.
SRC = os.pathsep.join([str(Path(tidings.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_BROKER"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "NO_COLOR": "1", "PYTHONPATH": SRC},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _check(url: str) -> None:
    """The reply printed as JSON; exit 1 with the reason on a failure reply or a timeout."""
    run = uuid.uuid4().hex[:8]
    topic = f"price-{run}"
    pricing = App(f"pricing-{run}", broker=url)

    @pricing.subscribe(topic, group=f"pricing-{run}")
    async def price(data: dict[str, Any]) -> dict[str, Any]:
        if not data["items"]:
            raise Reject("empty cart")
        return {"total": sum(data["items"])}

    async with pricing:
        code, out, err = await _cli(
            "request", topic, "--type", "PriceCart", "--data", '{"items": [2, 3]}',
            "--timeout", "20", "--broker", url,
        )  # fmt: skip
        assert code == 0, err
        reply = json.loads(out)
        assert reply["type"] == "PriceCart.reply"
        assert reply["data"] == {"total": 5}
        assert reply["causationid"]

        code, out, err = await _cli(
            "request", topic, "-t", "PriceCart", "-d", '{"items": []}', "--timeout", "20",
            "--broker", url,
        )  # fmt: skip
        assert code == 1 and out == ""
        assert "failed: Reject: empty cart" in err

        code, out, err = await _cli(
            "request", f"nobody-{run}", "-t", "Ping", "-d", "{}", "--timeout", "0.5",
            "--broker", url,
        )  # fmt: skip
        assert code == 1 and out == ""
        assert "no reply to request" in err and f"'nobody-{run}'" in err


async def test_request_on_the_embedded_broker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rr.db'}"
    await _check(url)
    code, _, err = await _cli("request", "t", "-t", "Ping", "-d", "{bad", "--broker", url)
    assert code == 2 and "--data is not valid JSON" in err


async def test_request_on_nats() -> None:
    await _check(system_url())


async def test_request_on_kafka(tansu: Tansu) -> None:  # noqa: F811
    await _check(tansu.url(TEST_OPTIONS))
