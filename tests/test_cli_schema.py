"""``tidings schema``: real CLI processes on an app module that changes between versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIMEOUT = 60.0
TYPE = "com.example.order.placed"

APP = """
from pydantic import BaseModel

from tidings import App, event_type


@event_type("com.example.order.placed")
class OrderPlaced(BaseModel):
    order_id: str
    total: float
{fields}

@event_type("com.example.order.shipped")
class OrderShipped(BaseModel):
    order_id: str


app = App("shop")
app.route(OrderPlaced, "orders")


@app.subscribe("shipping", group="mail")
async def mail(shipped: OrderShipped) -> None:
    pass
"""
V2_FIELDS = '    currency: str = "EUR"\n'
#: breaks BACKWARD: a required field without a default, and total narrowed
V3_FIELDS = '    currency: str = "EUR"\n    region: str\n'
V3 = APP.replace("    total: float\n", "    total: int\n")


def write_app(project: Path, fields: str = "", source: str = APP) -> None:
    (project / "shop.py").write_text(textwrap.dedent(source).replace("{fields}", fields))


def tidings(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIDINGS_BROKER", "TIDINGS_SCHEMAS")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", "schema", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture(params=["broker", "directory"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The registry options: the embedded broker's file, or a registry directory."""
    if request.param == "broker":
        return ["--broker", f"sqlite:///{tmp_path / 'shop.db'}"]
    return ["--registry", str(tmp_path / "schemas")]


def test_register_then_check_refuses_a_breaking_version(tmp_path: Path, where: list[str]) -> None:
    write_app(tmp_path)
    first = tidings(tmp_path, "register", "shop:app", *where)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"{TYPE}: v1 registered",
        "com.example.order.shipped: v1 registered",
    ]
    again = tidings(tmp_path, "register", "shop:app", *where)
    assert f"{TYPE}: v1 unchanged" in again.stdout

    write_app(tmp_path, V2_FIELDS)
    checked = tidings(tmp_path, "check", "shop:app", *where)
    assert checked.returncode == 0, checked.stderr
    assert f"{TYPE}: compatible, would be v2" in checked.stdout
    second = tidings(tmp_path, "register", "shop:app", *where)
    assert second.returncode == 0, second.stderr
    assert f"{TYPE}: v2 registered" in second.stdout
    assert "com.example.order.shipped: v1 unchanged" in second.stdout

    write_app(tmp_path, V3_FIELDS, V3)
    refused = tidings(tmp_path, "check", "shop:app", *where)
    assert refused.returncode == 1
    assert f"{TYPE}: breaks BACKWARD compatibility" in refused.stdout
    assert "total: type narrowed from number to integer" in refused.stdout
    assert "region: required field added without a default" in refused.stdout
    assert "would be refused" in refused.stderr and "total, region" in refused.stderr
    registered = tidings(tmp_path, "register", "shop:app", *where)
    assert registered.returncode == 1
    assert "region" in registered.stdout

    listed = tidings(tmp_path, "list", "--json", *where)
    assert [json.loads(line) for line in listed.stdout.splitlines()] == [
        {"type": TYPE, "versions": [1, 2], "mode": "BACKWARD"},
        {"type": "com.example.order.shipped", "versions": [1], "mode": "BACKWARD"},
    ]


def test_list_show_diff_and_compat(tmp_path: Path, where: list[str]) -> None:
    write_app(tmp_path)
    assert tidings(tmp_path, "register", "shop:app", *where).returncode == 0
    assert "no schemas" not in tidings(tmp_path, "list", *where).stdout
    set_mode = tidings(tmp_path, "compat", TYPE, "none", *where)
    assert set_mode.stdout.strip() == f"{TYPE}: NONE"
    write_app(tmp_path, V3_FIELDS, V3)
    assert tidings(tmp_path, "register", "shop:app", *where).returncode == 0

    table = tidings(tmp_path, "list", *where).stdout.splitlines()
    assert table[0].split() == ["type", "latest", "versions", "mode"]
    assert table[1].split() == [TYPE, "2", "1,", "2", "NONE"]

    shown = json.loads(tidings(tmp_path, "show", TYPE, "--version", "1", *where).stdout)
    assert shown["$id"] == f"urn:tidings:schema:{TYPE}:1"
    assert shown["properties"]["total"]["type"] == "number"
    latest = json.loads(tidings(tmp_path, "show", TYPE, *where).stdout)
    assert latest["x-tidings-version"] == 2 and "region" in latest["required"]

    diff = tidings(tmp_path, "diff", TYPE, "1", "2", *where)
    assert diff.returncode == 0, diff.stderr
    lines = diff.stdout.splitlines()
    assert lines[0] == "backward (consumers on v2 reading v1 data): breaks"
    assert any(line.startswith("  - region: required field added") for line in lines)
    assert "forward (consumers on v1 reading v2 data): compatible" in lines
    backward = tidings(tmp_path, "diff", TYPE, "2", "1", *where).stdout
    assert "backward (consumers on v1 reading v2 data): compatible" in backward
    assert "forward (consumers on v2 reading v1 data): breaks" in backward

    assert tidings(tmp_path, "compat", TYPE, *where).stdout.strip() == f"{TYPE}: NONE"
    wrong = tidings(tmp_path, "compat", TYPE, "sideways", *where)
    assert wrong.returncode == 2 and "FULL_TRANSITIVE" in wrong.stderr
    missing = tidings(tmp_path, "show", TYPE, "--version", "9", *where)
    assert missing.returncode == 1 and "no schema version 9" in missing.stderr


def test_a_broker_that_keeps_no_schemas_asks_for_a_directory(tmp_path: Path) -> None:
    write_app(tmp_path)
    result = tidings(tmp_path, "list", "--broker", "memory://")
    assert result.returncode == 2
    assert "--registry PATH" in result.stderr and "TIDINGS_SCHEMAS" in result.stderr
