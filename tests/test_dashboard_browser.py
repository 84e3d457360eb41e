"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

A real ``tidings serve`` on an embedded broker file; the browser signs in with
``/?token=``, sees the topics and groups, follows a topic in the live tail
(an event published through the API must show within 1 s), opens an event,
and redrives a dead letter by clicking. Screenshots go to
``test-artifacts/dashboard/`` (or ``$TIDINGS_ARTIFACTS/dashboard``). Without
``/usr/bin/chromium`` the test skips, and fails under ``TIDINGS_REQUIRE_SERVICES=1``
(``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway_process import serving
from tidings import App, Reject

pytest.importorskip("playwright")
from _services import service_missing
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-test-token"
ARTIFACTS = Path(os.environ.get("TIDINGS_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat
        service_missing(f"no Chromium at {CHROMIUM} (Debian package chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        await launched.close()


async def _shot(page: Page, name: str) -> None:
    folder = ARTIFACTS / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _event(kind: str, n: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{n}",
        "source": "/browser-test",
        "type": kind,
        "subject": f"order-{n}",
        "data": {"n": n, "note": "<b>not html</b>"},
    }


async def test_the_dashboard_shows_live_events_and_redrives_a_dead_letter(
    browser: Browser, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    # A group that dead-letters what it cannot take: one dead letter to redrive.
    worker = App("billing", broker=url)
    fixed: list[bool] = []  # the bug behind the dead letter, fixed before the redrive
    billed: list[object] = []

    @worker.subscribe("orders", group="billing")
    async def bill(data: dict[str, object]) -> None:
        if data.get("n") == 0 and not fixed:
            raise Reject("order 0 cannot be billed")
        billed.append(data.get("n"))

    with serving(url, tmp_path, "--token", TOKEN) as served:
        headers = {
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/cloudevents+json",
        }
        async with httpx.AsyncClient(base_url=served.url, headers=headers) as api, worker:
            assert (
                await api.post("/topics/orders/events", json=_event("OrderPlaced", 0))
            ).status_code == 202
            for _ in range(100):
                if (await api.get("/dlq")).json()["queues"]:
                    break
                await asyncio.sleep(0.05)

            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{served.url}/?token={TOKEN}")
            assert page.url == f"{served.url}/"  # the token left the address bar
            await page.wait_for_selector("#status.live", timeout=10_000)
            await page.wait_for_selector('#topics tr[data-topic="orders"]', timeout=10_000)
            await page.wait_for_selector('#groups tr[data-group="billing"]', timeout=10_000)
            await page.wait_for_selector('#dlq tr[data-queue="orders.dlq"]', timeout=10_000)
            await _shot(page, "overview")

            await page.select_option("#tail-topic", "orders")
            await page.click("#tail-start")
            await asyncio.sleep(0.5)  # the stream is open
            published = time.monotonic()
            sent = await api.post("/topics/orders/events", json=_event("OrderPlaced", 7))
            assert sent.status_code == 202
            row = page.locator("#tail tbody tr", has_text="OrderPlaced-7")
            await row.wait_for(timeout=1_000)
            assert time.monotonic() - published < 1.0
            await row.click()
            await page.wait_for_selector("#detail-section:not([hidden])")
            assert await page.text_content("#detail-id") == "OrderPlaced-7"
            data = await page.text_content("#detail-data")
            assert data is not None and "<b>not html</b>" in data  # shown as text
            assert await page.locator("#detail-data b").count() == 0  # never as markup
            await _shot(page, "tail-and-detail")

            queue = page.locator('#dlq tr[data-queue="orders.dlq"]')
            await queue.get_by_role("button", name="Show").click()
            await page.wait_for_selector("#letters-body tr")
            assert "order 0 cannot be billed" in (await page.text_content("#letters-body") or "")
            await _shot(page, "dead-letters")
            fixed.append(True)
            await queue.get_by_role("button", name="Redrive").click()
            # (no wait_for_function: the page's CSP allows no eval, as it should)
            await page.wait_for_selector("#letters-title:has-text(': 0 letter')")
            letters = (await api.get("/dlq/orders")).json()["dead_letters"]
            assert letters == []
            stored = (await api.get("/events/OrderPlaced-0?topic=orders")).json()
            assert len(stored["stored"]) == 2  # published, then redriven to its topic
            for _ in range(100):  # and billed this time
                if 0 in billed:
                    break
                await asyncio.sleep(0.05)
            assert 0 in billed
            await _shot(page, "after-redrive")
            await page.close()
