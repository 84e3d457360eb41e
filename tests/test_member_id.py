"""Member ids say which app, host and process a member is (shown by ``tidings groups``)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from tidings.broker import SubscribeOptions
from tidings.brokers._member_id import member_id
from tidings.brokers.sqlite import SqliteBroker

HERE = re.escape(f"{socket.gethostname()}:{os.getpid()}")


def test_a_member_id_names_the_client_host_and_process() -> None:
    assert re.fullmatch(rf"shop@{HERE}-[0-9a-f]{{8}}", member_id("shop"))
    assert re.fullmatch(rf"{HERE}-[0-9a-f]{{8}}", member_id())
    assert len({member_id("shop") for _ in range(1000)}) == 1000


async def test_sqlite_members_carry_the_client_name(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "m.db"))
    await broker.connect()
    try:
        named = await broker.subscribe(["t"], "g", SubscribeOptions(client_name="billing"))
        anonymous = await broker.subscribe(["t"], "g")
        assert re.fullmatch(rf"billing@{HERE}-[0-9a-f]{{8}}", named.member_id)
        assert re.fullmatch(rf"{HERE}-[0-9a-f]{{8}}", anonymous.member_id)
        (group,) = await broker.list_groups()
        assert sorted(group.members) == sorted([named.member_id, anonymous.member_id])
        await named.close()
        await anonymous.close()
    finally:
        await broker.close()


async def test_an_apps_members_carry_its_name(tmp_path: Path) -> None:
    from tidings import App

    url = f"sqlite:///{tmp_path / 'app.db'}"
    app = App("billing", broker=url)

    @app.subscribe("invoices", group="billing")
    async def bill(data: dict[str, object]) -> None: ...

    async with app:
        inspector = SqliteBroker(str(tmp_path / "app.db"))
        await inspector.connect()
        try:
            (group,) = [g for g in await inspector.list_groups() if g.name == "billing"]
        finally:
            await inspector.close()
    assert [m.split("@")[0] for m in group.members] == ["billing"]
