"""The dashboard's server side: the page and its assets, the snapshot stream, the demo's board."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway_process import free_port, serving

TOKEN = "board-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_the_page_loads_only_from_this_gateway_and_its_assets_are_served(tmp_path: Path) -> None:
    with serving(f"sqlite:///{tmp_path / 'b.db'}", tmp_path, "--token", TOKEN) as served:
        page = httpx.get(f"{served.url}/", headers=AUTH)
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert 'src="/dashboard/app.js"' in page.text
        script = httpx.get(f"{served.url}/dashboard/app.js", headers=AUTH)
        assert script.status_code == 200 and "textContent" in script.text
        assert "innerHTML" not in script.text  # event content goes in as text only
        assert script.headers["content-type"].startswith("text/javascript")
        style = httpx.get(f"{served.url}/dashboard/app.css", headers=AUTH)
        assert style.headers["content-type"].startswith("text/css")
        assert httpx.get(f"{served.url}/dashboard/app.js").status_code == 401


def test_the_snapshot_stream_carries_topics_groups_and_dead_letters(tmp_path: Path) -> None:
    with serving(f"sqlite:///{tmp_path / 'b.db'}", tmp_path, "--token", TOKEN) as served:
        event = {"specversion": "1.0", "id": "e1", "source": "/t", "type": "T", "data": {}}
        posted = httpx.post(
            f"{served.url}/topics/orders/events",
            json=event,
            headers={**AUTH, "content-type": "application/cloudevents+json"},
        )
        assert posted.status_code == 202
        with httpx.stream("GET", f"{served.url}/dashboard/stream", headers=AUTH) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: snapshot"
            snapshot = json.loads(next(lines).removeprefix("data: "))
        [orders] = snapshot["topics"]
        assert (orders["name"], orders["events"]) == ("orders", 1)
        assert snapshot["groups"] == [] and snapshot["dlq"] == []


def test_the_demo_serves_the_dashboard_while_the_shop_runs(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidings.cli",
            "demo",
            "--dashboard",
            "--port",
            str(port),
            "--orders",
            "20",
            "--rate",
            "0",
            "--headless",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: list[str] = []
    try:
        assert process.stdout is not None
        address = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "still at" not in address:
            line = process.stdout.readline()
            printed.append(line)
            if line.startswith("dashboard:"):
                address = line
        assert "still at" in address, address
        url = address.split("still at ", 1)[1].split(" ", 1)[0]
        token = url.split("token=", 1)[1]
        base = url.split("/?", 1)[0]
        topics = httpx.get(f"{base}/topics", headers={"authorization": f"Bearer {token}"})
        assert "order.events" in {t["name"] for t in topics.json()["topics"]}
        assert httpx.get(f"{base}/topics").status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "every invariant holds" in "".join(printed) + out
