"""Who may use the gateway and what it refuses: token, cookie, body limit, malformed events."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from cloudevents.v1 import conversion as sdk_conversion
from cloudevents.v1.http import CloudEvent as SdkEventV1

from gateway_process import serving as serving_process
from test_gateway import AUTH, STRUCTURED, TOKEN, cloudevent, events_of, serving, stored
from tidings.errors import ConfigurationError
from tidings.gateway import Settings, create_app, stored_token, token_path

ROUTES = [
    ("GET", "/"),
    ("GET", "/topics"),
    ("GET", "/groups"),
    ("GET", "/topics/orders/stream"),
    ("POST", "/topics/orders/events"),
    ("GET", "/dlq"),
    ("GET", "/dlq/orders"),
    ("GET", "/dlq/orders/0"),
    ("POST", "/dlq/orders/redrive"),
    ("POST", "/dlq/orders/purge"),
    ("GET", "/events/e-1"),
    ("GET", "/trace/e-1"),
]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
async def anonymous(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway that asks for TOKEN, sending no token."""
    async for client in serving(url, headers={}):
        yield client


@pytest.fixture
async def client_with_token(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serving(url):
        yield client


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_but_openapi_answers_401_without_a_valid_token(
    anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    missing = await anonymous.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "a token is needed" in missing.json()["error"]
    for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}"):
        refused = await anonymous.request(method, path, headers={"authorization": wrong})
        assert refused.status_code == 401, wrong
    on_query = await anonymous.request(method, f"{path}?token=nope")
    assert on_query.status_code == 401


async def test_the_token_opens_every_route_and_openapi_needs_none(
    anonymous: httpx.AsyncClient,
) -> None:
    assert (await anonymous.get("/openapi.json")).status_code == 200
    for scheme in ("Bearer", "bearer"):
        response = await anonymous.get("/topics", headers={"authorization": f"{scheme} {TOKEN}"})
        assert response.status_code == 200
    # A token in the query opens nothing but the cookie flow of "/" (it would end up in logs).
    assert (await anonymous.get(f"/topics?token={TOKEN}")).status_code == 401


async def test_the_dashboard_takes_the_token_once_and_keeps_it_in_a_strict_cookie(
    anonymous: httpx.AsyncClient,
) -> None:
    refused = await anonymous.get("/?token=wrong")
    assert refused.status_code == 401 and "set-cookie" not in refused.headers

    response = await anonymous.get(f"/?token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert cookie.startswith(f"tidings_token={TOKEN};")
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back

    page = await anonymous.get("/")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert TOKEN not in page.text
    assert (await anonymous.get("/topics")).status_code == 200
    anonymous.cookies.clear()
    assert (await anonymous.get("/topics")).status_code == 401


async def test_without_a_token_one_is_made_beside_the_database_and_kept(
    url: str, tmp_path: Path
) -> None:
    app = create_app(url, Settings(poll_interval=0.02))
    path = tmp_path / "gateway.db.token"
    assert token_path(url) == path
    token = path.read_text().strip()
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept = stored_token(url)
    assert (kept.value, kept.path, kept.created) == (token, path, False)
    assert token not in repr(kept)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            assert (await client.get("/topics")).status_code == 401
            headers = {"authorization": f"Bearer {token}"}
            assert (await client.get("/topics", headers=headers)).status_code == 200


def test_other_brokers_keep_the_token_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    made = stored_token("memory://")
    assert made.created and made.path == tmp_path / "state" / "tidings" / "gateway.token"
    assert stored_token("kafka://localhost:9092").value == made.value
    made.path.write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        stored_token("memory://")
    with pytest.raises(ConfigurationError, match="must not be empty"):
        Settings(token=" ")


async def test_no_auth_asks_for_no_token(url: str) -> None:
    async for client in serving(url, Settings(auth=False), headers={}):
        assert (await client.get("/topics")).status_code == 200


async def test_the_body_limit_is_1_mib_by_default(url: str) -> None:
    async for client in serving(url, Settings(token=TOKEN)):
        body = json.dumps(cloudevent(1, data="x" * (1024 * 1024)))
        response = await client.post("/topics/orders/events", content=body, headers=STRUCTURED)
        assert response.status_code == 413
        assert "limit of 1048576 bytes" in response.json()["error"]

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
            for _ in range(17):
                yield b"x" * 65536

        response = await client.post(
            "/topics/orders/events",
            content=chunks(),
            headers=STRUCTURED | {"ce-specversion": "1.0"},
        )
        assert response.status_code == 413


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (STRUCTURED, "{not json", "invalid CloudEvent"),
        (STRUCTURED, "[]", "invalid CloudEvent"),
        (STRUCTURED, json.dumps({**cloudevent(1), "specversion": "0.3"}), "specversion"),
        (STRUCTURED, json.dumps({**cloudevent(1), "source": ""}), "'source'"),
        ({"ce-specversion": "1.0", "ce-source": "/t", "ce-type": "T"}, "x", "'id'"),
        ({"ce-id": "1", "ce-source": "/t", "ce-type": "T"}, "x", "ce-specversion"),
        ({"content-type": "application/cloudevents-batch+json"}, "[]", "the batch is empty"),
    ],
)
async def test_a_malformed_cloudevent_is_400_with_the_reason(
    url: str, headers: dict[str, str], body: str, reason: str
) -> None:
    async for client in serving(url):
        response = await client.post("/topics/orders/events", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert reason in response.json()["error"]


def _sdk_messages() -> list[tuple[str, dict[str, str], bytes]]:
    """The same order event in both modes, made by both APIs of the official SDK."""
    attributes = {
        "source": "/sdk",
        "type": "OrderPlaced",
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "subject": "café",
    }
    out = []
    for mode, convert in (("structured", sdk_http.to_structured), ("binary", sdk_http.to_binary)):
        event = SdkEvent({**attributes, "id": f"sdk-{mode}"}, {"number": 1})
        message = convert(event, JSONFormat())
        out.append((f"sdk-{mode}", dict(message.headers), message.body))
    for mode, old in (("structured-v1", True), ("binary-v1", False)):
        # The 1.x API puts headers as they are: an ASCII subject (the 2.x API percent-encodes).
        event_v1 = SdkEventV1({**attributes, "id": f"sdk-{mode}", "subject": "cafe"}, {"number": 1})
        convert_v1 = sdk_conversion.to_structured if old else sdk_conversion.to_binary
        headers, body = convert_v1(event_v1)
        out.append((f"sdk-{mode}", dict(headers), body))
    return out


def test_the_official_cloudevents_sdk_publishes_in_structured_and_binary_mode(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'sdk.db'}"
    messages = _sdk_messages()
    with (
        serving_process(url, tmp_path, TIDINGS_TOKEN=TOKEN) as served,
        httpx.Client(base_url=served.url, headers=AUTH) as client,
    ):
        for event_id, headers, body in messages:
            response = client.post("/topics/orders/events", content=body, headers=headers)
            assert response.status_code == 202, response.text
            assert response.json()["ids"] == [event_id]
        unauthorized = client.post(
            "/topics/orders/events",
            content=messages[0][2],
            headers=messages[0][1] | {"authorization": "Bearer wrong"},
        )
        assert unauthorized.status_code == 401
    found = events_of(asyncio.run(stored(url, "orders")))
    assert set(found) == {event_id for event_id, _, _ in messages}
    for _, event in found.values():
        assert event.type == "OrderPlaced" and event.source == "/sdk"
        assert event.subject == ("cafe" if event.id.endswith("-v1") else "café")
        assert event.data == {"number": 1}


def test_serve_makes_a_token_prints_it_once_and_keeps_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'first.db'}"
    with serving_process(url, tmp_path) as first:
        token = (tmp_path / "first.db.token").read_text().strip()
        assert httpx.get(f"{first.url}/topics").status_code == 401
        headers = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{first.url}/topics", headers=headers).status_code == 200
    assert first.stdout == token + "\n"
    assert "shown only this once" in first.stderr
    with serving_process(url, tmp_path) as second:
        assert httpx.get(f"{second.url}/topics", headers=headers).status_code == 200
    assert second.stdout == ""
    with serving_process(url, tmp_path, "--no-auth", "--max-body-size", "100") as open_:
        assert httpx.get(f"{open_.url}/topics").status_code == 200
        body = json.dumps(cloudevent(1, data="x" * 100))
        response = httpx.post(f"{open_.url}/topics/t/events", content=body, headers=STRUCTURED)
        assert response.status_code == 413 and "100 bytes" in response.json()["error"]
    assert "--no-auth" in open_.stderr


async def test_event_content_never_comes_back_as_html(client_with_token: httpx.AsyncClient) -> None:
    script = "<script>alert(1)</script>"
    body = json.dumps(cloudevent(1, id=script, data=script, subject=script))
    client = client_with_token
    response = await client.post("/topics/orders/events", content=body, headers=STRUCTURED)
    assert response.status_code == 202
    for path in (f"/events/{script}", "/events/missing-<b>", "/trace/<b>", "/dlq/<b>"):
        answer = await client.get(path)
        assert answer.headers["content-type"] == "application/json", path
        assert answer.headers["x-content-type-options"] == "nosniff"
    found = (await client.get(f"/events/{script}")).json()
    assert found["event"]["data"] == script
    home = await client.get("/")
    assert home.headers["content-type"].startswith("text/html") and "<script>" not in home.text
    assert (await client.get("/openapi.json")).headers["x-content-type-options"] == "nosniff"
