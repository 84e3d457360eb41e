"""``tidings request``: a real CLI process asking an App that answers on the embedded broker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from tidings import App, Reject


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_BROKER"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_request_prints_the_reply_and_fails_on_timeout_or_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rr.db'}"
    pricing = App("pricing", broker=url)

    @pricing.subscribe("price.requests", group="pricing")
    async def price(data: dict[str, Any]) -> dict[str, Any]:
        if not data["items"]:
            raise Reject("empty cart")
        return {"total": sum(data["items"])}

    async with pricing:
        code, out, err = await _cli(
            "request", "price.requests", "--type", "PriceCart",
            "--data", '{"items": [2, 3]}', "--broker", url,
        )  # fmt: skip
        assert code == 0, err
        reply = json.loads(out)
        assert reply["type"] == "PriceCart.reply"
        assert reply["data"] == {"total": 5}
        assert reply["causationid"]

        code, out, err = await _cli(
            "request", "price.requests", "-t", "PriceCart", "-d", '{"items": []}',
            "--broker", url,
        )  # fmt: skip
        assert code == 1 and out == ""
        assert "failed: Reject: empty cart" in err

        code, out, err = await _cli(
            "request", "nobody.listens", "-t", "Ping", "-d", "{}", "--timeout", "0.5",
            "--broker", url,
        )  # fmt: skip
        assert code == 1 and out == ""
        assert "no reply to request" in err and "'nobody.listens'" in err

    code, _, err = await _cli("request", "t", "-t", "Ping", "-d", "{bad", "--broker", url)
    assert code == 2 and "--data is not valid JSON" in err
