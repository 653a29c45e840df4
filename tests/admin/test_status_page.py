"""The status page over real HTTP (the admin server's own thread and event loop) on a
deployment the real pipeline filled: content, secrets, card previews, auth, headers."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.admin.app import SECURITY_HEADERS
from receiver.admin.server import AdminServer
from receiver.config.settings import AdminSettings
from tests.admin.conftest import ADMIN_TOKEN, CALM_TITLE, EVIL_TITLE, Deployment

STATIC = Path(__file__).parents[2] / "receiver" / "admin" / "static"
CARD_DATA = re.compile(
    r'<script type="application/json" class="card-data" '
    r'data-target="card-\d+">(.*?)</script>',
    re.S,
)


@pytest.fixture
async def page(deployment: Deployment) -> AsyncIterator[str]:
    server = deployment.admin().start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _content(card: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = card["attachments"][0]["content"]
    return content


async def test_status_page_shows_the_deployment(deployment: Deployment, page: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(page + "/status")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    # Subscriptions with their time to expiry (the supervisor made one for ~30 days).
    assert deployment.subscription_id in html and "29d 2" in html
    # Stream lag per stage, sink health and dead letters: audit refused the high alert.
    for stream in ("notifications", "alerts", "sink:teams", "sink:audit"):
        assert f"<code>{stream}</code>" in html
    assert re.search(
        r"<td>audit</td><td>webhook</td><td class=\"num\">0</td>"
        r"<td class=\"num\">1</td>\s*<td class=\"state-bad\">1 dead-lettered</td>",
        html,
    )
    assert "FREE (no scheduler)" in html and "ATTENTION NEEDED" in html
    # The last alerts with their delivery timeline.
    assert CALM_TITLE in html
    for kind in ("routed", "delivered", "dead_lettered"):
        assert f"<td>{kind}</td>" in html
    assert deployment.alert_ids[EVIL_TITLE] in html and deployment.alert_ids[CALM_TITLE] in html


async def test_card_previews_are_the_cards_teams_got(deployment: Deployment, page: str) -> None:
    async with httpx.AsyncClient() as client:
        html = (await client.get(page + "/status")).text
    shown = [json.loads(raw) for raw in CARD_DATA.findall(html)]
    sent = [_content(card) for card in deployment.sinks.cards]
    key = lambda card: json.dumps(card, sort_keys=True)  # noqa: E731
    assert sorted(map(key, shown)) == sorted(map(key, sent))


async def test_attacker_titles_cannot_break_out(deployment: Deployment, page: str) -> None:
    async with httpx.AsyncClient() as client:
        html = (await client.get(page + "/status")).text
    assert EVIL_TITLE not in html
    assert "<script>document.title" not in html and "<img" not in html
    # Exactly our script elements: two card data blocks and the two static scripts.
    assert html.count("<script") == 4 == html.count("</script>")
    assert "&lt;/script&gt;&lt;script&gt;" in html  # the title, as text
    titles = [
        body[1]["text"]
        for card in map(json.loads, CARD_DATA.findall(html))
        for body in [card["body"][0]["items"]]
    ]
    assert EVIL_TITLE in titles  # the JSON block decodes to the real title


async def test_no_secret_on_the_page(deployment: Deployment, page: str) -> None:
    async with httpx.AsyncClient() as client:
        bodies = [(await client.get(page + path)).text for path in ("/status", "/status.json")]
    for body in bodies:
        secret = deployment.settings.tenants[0].client_secret
        assert secret is not None and secret.get_secret_value() not in body
        assert deployment.client_state not in body
        assert "hook-token-aaaaaaaaaaaaaaaa" not in body  # the Teams webhook URL's token
        assert deployment.sink_url + "/audit" not in body  # URLs show their host at most


async def test_status_json(deployment: Deployment, page: str) -> None:
    async with httpx.AsyncClient() as client:
        data = (await client.get(page + "/status.json")).json()
    health = data["health"]
    assert health["healthy"] is False and health["problems"] == ["no scheduler holds the lease"]
    (sub,) = health["subscriptions"]
    assert sub["state"] == "ok" and 29 * 86_400 < sub["expires_in_s"] <= 30 * 86_400
    assert {s["name"]: s["dead_letters"] for s in health["sinks"]} == {"teams": 0, "audit": 1}
    by_title = {a["title"]: a for a in data["alerts"]}
    assert set(by_title) == {EVIL_TITLE, CALM_TITLE}
    events = [(e["event"], e["sink"]) for e in by_title[EVIL_TITLE]["timeline"]]
    assert ("delivered", "teams") in events and ("dead_lettered", "audit") in events


async def test_token_is_required_when_set(deployment: Deployment) -> None:
    server = deployment.admin(token=ADMIN_TOKEN).start()
    base = f"http://127.0.0.1:{server.port}"
    basic = base64.b64encode(f"ops:{ADMIN_TOKEN}".encode()).decode()
    try:
        async with httpx.AsyncClient() as client:
            for path in ("/status", "/status.json"):
                refused = await client.get(base + path)
                assert refused.status_code == 401
                assert refused.headers.get_list("www-authenticate") == [
                    'Bearer realm="receiver admin"',
                    'Basic realm="receiver admin", charset="UTF-8"',
                ]
                for wrong in (
                    "Bearer nope",
                    f"Bearer {ADMIN_TOKEN}x",
                    "Basic !!",
                    f"Token {ADMIN_TOKEN}",
                    ADMIN_TOKEN,
                ):
                    answer = await client.get(base + path, headers={"authorization": wrong})
                    assert answer.status_code == 401, wrong
                    assert ADMIN_TOKEN not in answer.text
                assert (
                    await client.get(
                        base + path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
                    )
                ).status_code == 200
                assert (
                    await client.get(base + path, headers={"authorization": f"Basic {basic}"})
                ).status_code == 200
            # The static assets carry no data: a browser loads them without the token.
            assert (await client.get(base + "/static/status.js")).status_code == 200
            # Read-only: nothing but GET and HEAD.
            assert (
                await client.post(
                    base + "/status", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
                )
            ).status_code == 405
    finally:
        server.stop()


async def test_security_headers_everywhere(page: str) -> None:
    async with httpx.AsyncClient() as client:
        for path in ("/status", "/status.json", "/static/adaptivecards.min.js", "/nope"):
            response = await client.get(page + path)
            for name, value in SECURITY_HEADERS.items():
                assert response.headers[name] == value, (path, name)
        assert (await client.get(page + "/", follow_redirects=False)).headers[
            "location"
        ] == "/status"


async def test_redis_down_is_a_clear_503(deployment: Deployment) -> None:
    settings = deployment.settings.model_copy(
        update={
            "redis": deployment.settings.redis.model_copy(
                update={"url": "redis://:hunter2-password@127.0.0.1:1/0", "connect_retries": 0}
            ),
            "admin": AdminSettings(),
        }
    )
    server = AdminServer(settings).start()
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/status")
    finally:
        server.stop()
    assert response.status_code == 503
    assert "Redis unavailable" in response.text and "hunter2" not in response.text


def test_shipped_renderer_is_the_documented_one() -> None:
    readme = (STATIC / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256((STATIC / "adaptivecards.min.js").read_bytes()).hexdigest()
    assert f"sha256 of `adaptivecards.min.js`: `{digest}`" in readme
    assert "MIT License" in (STATIC / "LICENSE").read_text(encoding="utf-8")
    assert "adaptivecards` 3.0.6" in readme or "`adaptivecards`](" in readme
