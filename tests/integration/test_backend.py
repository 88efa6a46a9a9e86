"""The demo backend over real sockets: identity, content negotiation, health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from backend.app import create_app, hue_of, prefers_html

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
INSTANCE = UUID("6f9619ff-8b86-4d01-b42d-00cf4fc964ff")


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(INSTANCE))


async def test_json_answer_is_the_process_uuid_on_every_request(client: Client) -> None:
    answers = []
    for _ in range(3):
        response = await client.get("/")
        assert response.status == 200
        assert response.content_type == "application/json"
        answers.append(await response.json())
    assert answers == [{"uuid": str(INSTANCE)}] * 3


async def test_fresh_app_draws_a_valid_uuid4(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(create_app())
    body = await (await client.get("/")).json()
    assert UUID(body["uuid"]).version == 4


async def test_any_get_path_answers_with_the_uuid(client: Client) -> None:
    response = await client.get("/app/some/page?x=1")
    assert response.status == 200
    assert await response.json() == {"uuid": str(INSTANCE)}


async def test_browser_gets_a_page_with_the_uuid_in_its_colour(client: Client) -> None:
    response = await client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert str(INSTANCE) in page
    assert f"hsl({hue_of(INSTANCE)}," in page
    assert "http" not in page  # self-contained: no external assets


async def test_answers_are_not_cached_and_vary_on_accept(client: Client) -> None:
    response = await client.get("/")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Vary"] == "Accept"


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.text() == "ok"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/html", True),
        (BROWSER_ACCEPT, True),
        ("text/*", True),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.1, text/html;q=0.2", True),
        ("text/html;q=0, */*", False),
        ("TEXT/HTML", True),
        ("text/html;q=oops, application/json;q=0.1", False),
    ],
)
def test_prefers_html(accept: str, html: bool) -> None:
    assert prefers_html(accept) is html


def test_hue_comes_from_the_first_bytes() -> None:
    assert hue_of(UUID(int=0)) == 0
    assert hue_of(UUID("80000000-0000-4000-8000-000000000000")) == 180
    assert 0 <= hue_of(UUID("ffffffff-ffff-4fff-bfff-ffffffffffff")) < 360
