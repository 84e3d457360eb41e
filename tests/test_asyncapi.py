"""`tidings asyncapi`: the document validates against the official AsyncAPI 3.0 JSON Schema.

The schema comes from the npm package ``@asyncapi/specs`` (its bundled
``schemas/3.0.0-without-$id.json``), fetched once with ``npm pack`` into
``~/.cache/tidings-tests``. Without npm the test skips, and fails under
``TIDINGS_REQUIRE_SERVICES=1``, like a missing service.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import run_python, service_missing

from tidings.schemas.asyncapi import document

SPECS = "@asyncapi/specs@6.11.1"
CACHE = Path.home() / ".cache" / "tidings-tests" / "asyncapi-specs-6.11.1"
APP = """
from pydantic import BaseModel
from tidings import App, event_type

app = App("shop", broker="mqtt://guest:secret@127.0.0.1:1883")


@event_type("com.example.order.placed", version=2)
class OrderPlaced(BaseModel):
    order_id: str
    lines: list["Line"]


class Line(BaseModel):
    sku: str
    quantity: int


class Tick(BaseModel):
    n: int


app.route(OrderPlaced, "orders")


@app.subscribe("orders", group="billing")
async def bill(order: OrderPlaced) -> Tick:
    return Tick(n=1)


@app.subscribe("sensors/+/temp", group="monitor")
async def watch(data: dict) -> None:
    pass


app.route(Tick, "ticks")
"""


@pytest.fixture(scope="module")
def official_schema() -> dict[str, Any]:
    target = CACHE / "package" / "schemas" / "3.0.0-without-$id.json"
    if not target.exists():
        npm = shutil.which("npm")
        if npm is None:
            service_missing("npm is needed to fetch the official AsyncAPI schema (@asyncapi/specs)")
        CACHE.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            [npm, "pack", SPECS, "--silent"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if packed.returncode != 0:
            service_missing(f"npm pack {SPECS} failed: {packed.stderr.strip()[:300]}")
        with tarfile.open(CACHE / packed.stdout.strip().splitlines()[-1]) as archive:
            archive.extractall(CACHE, filter="data")
    loaded: dict[str, Any] = json.loads(target.read_text())
    return loaded


def _app_module(tmp_path: Path) -> Path:
    (tmp_path / "shop_app.py").write_text(APP)
    return tmp_path


def test_the_document_of_an_app_is_valid_asyncapi_3(
    tmp_path: Path, official_schema: dict[str, Any]
) -> None:
    folder = _app_module(tmp_path)
    out = run_python("-m", "tidings.cli", "asyncapi", "shop_app:app", cwd=folder)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    validator = jsonschema_rs.validator_for(official_schema)
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors[:5]
    # The check has teeth: AsyncAPI 2's "publish" is no 3.0 action.
    broken = json.loads(out.stdout)
    next(iter(broken["operations"].values()))["action"] = "publish"
    assert not validator.is_valid(broken)
    assert doc["servers"]["broker"] == {"host": "127.0.0.1:1883", "protocol": "mqtt"}
    assert "secret" not in out.stdout
    assert doc["channels"]["orders"]["address"] == "orders"
    assert doc["channels"]["sensors___temp"]["address"] == "sensors/+/temp"
    placed = doc["components"]["messages"]["com.example.order.placed"]
    assert placed["headers"]["properties"]["type"]["const"] == "com.example.order.placed"
    assert placed["payload"]["properties"]["lines"]["items"] == {"$ref": "#/$defs/Line"}
    actions = {name: op["action"] for name, op in doc["operations"].items()}
    assert actions["send.com.example.order.placed"] == "send"
    assert actions["send.Tick"] == "send"
    receive = doc["operations"]["receive.shop.bill.orders"]
    assert receive["action"] == "receive" and receive["x-tidings-group"] == "billing"


def test_the_yaml_form_is_the_same_document(tmp_path: Path) -> None:
    folder = _app_module(tmp_path)
    as_json = run_python("-m", "tidings.cli", "asyncapi", "shop_app:app", cwd=folder)
    as_yaml = run_python("-m", "tidings.cli", "asyncapi", "shop_app:app", "--yaml", cwd=folder)
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)


def test_an_app_with_nothing_routed_is_still_a_document(official_schema: dict[str, Any]) -> None:
    from tidings import App

    doc = document(App("empty", broker="memory://"))
    assert jsonschema_rs.validator_for(official_schema).is_valid(doc)
