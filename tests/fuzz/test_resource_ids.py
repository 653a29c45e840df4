"""Property tests of resource and id parsing (issue 15, item 3): whatever a notification's
resource or a link's alert id holds (non-GUID ids, path-like text, percent-encodings,
surrogates), it is refused or it becomes exactly one segment under its collection, as httpx
will send it."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from receiver.graph.resources import (
    COLLECTIONS,
    BadResource,
    alert_path,
    check_id,
    parse_resource,
)

GRAPH = "https://graph.example/v1.0"
_PIECES = st.sampled_from(
    [
        "..",
        ".",
        "/",
        "%2F",
        "%2f",
        "%2e",
        "%252F",
        "\\",
        "?",
        "#",
        ";",
        "%",
        "@",
        ":",
        "~",
        "_",
        "-",
        "+",
        "=",
        " ",
        "\t",
        "\x00",
        "\ud800",
        "\u00e9",
        "sn877227773909790491_266377769",
        "da637578995287051192_756343937",
        "5f0b4f6a-8d0c-4c5e-9a41-1d2a6b0c9e11",
        "tenants",
        "_sim",
    ]
)
IDS = st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=8).map("".join))


def _sent_path(path: str) -> str:
    """The path httpx puts on the wire for ``graph_url/path`` (dot segments resolved)."""
    return httpx.URL(f"{GRAPH}/{path}").raw_path.decode("ascii").split("?", 1)[0]


@settings(max_examples=400, deadline=None)
@given(
    collection=st.sampled_from(COLLECTIONS),
    alert_id=IDS,
    case=st.sampled_from([str.lower, str.upper, str.title]),
    slashes=st.sampled_from(["", "/"]),
)
@example(collection="security/alerts", alert_id="../../../_sim/tenants", case=str.lower, slashes="")
@example(collection="security/alerts_v2", alert_id="a%2F..%2Fb", case=str.lower, slashes="")
@example(collection="security/alerts_v2", alert_id="..", case=str.lower, slashes="/")
@example(collection="security/alerts", alert_id="0/", case=str.lower, slashes="")
def test_a_resource_is_one_segment_under_its_collection_or_refused(
    collection: str, alert_id: str, case: object, slashes: str
) -> None:
    resource = f"{slashes}{case(collection)}/{alert_id}"  # type: ignore[operator]
    try:
        parsed = parse_resource(resource)
    except BadResource:
        return
    # One trailing "/" is tolerated (parse_resource's docstring): "0/" names item "0".
    expected = alert_id.removesuffix("/")
    assert parsed.collection == collection and parsed.id == expected
    sent = _sent_path(parsed.path)
    prefix = f"/v1.0/{collection}/"
    assert sent.startswith(prefix)
    segment = sent.removeprefix(prefix)
    assert "/" not in segment and unquote(segment) == expected
    assert alert_path(collection, expected) == parsed.path


@settings(max_examples=300, deadline=None)
@given(alert_id=IDS)
def test_an_id_is_checked_the_same_everywhere(alert_id: str) -> None:
    try:
        check_id(alert_id)
    except BadResource:
        with pytest.raises(BadResource):
            alert_path("security/alerts_v2", alert_id)
        return
    assert alert_id not in (".", "..") and "%" not in alert_id and "/" not in alert_id
    assert 0 < len(alert_id) <= 256 and alert_id.isascii()


@pytest.mark.parametrize(
    "good",
    [
        "sn877227773909790491_266377769",
        "1",
        "ABC-def.123~x",
        "5f0b4f6a-8d0c-4c5e-9a41-1d2a6b0c9e11",
        "da637578995287051192_756343937",
    ],
)
def test_graph_ids_pass(good: str) -> None:
    assert parse_resource(f"Security/Alerts_v2/{good}").path == f"security/alerts_v2/{good}"


@pytest.mark.parametrize(
    "bad",
    [
        "security/alerts",
        "security/alerts/",
        "security/alerts/a/b",
        "security//alerts/a",
        "users/x",
        "security/alerts_v3/x",
        "security/alerts/../../../_sim/tenants",
        "security/alerts_v2/a%2F..%2Fb",
        "//security/alerts/x",
        "security/alerts/x?$select=id",
        "",
    ],
)
def test_other_resources_are_refused(bad: str) -> None:
    with pytest.raises(BadResource):
        parse_resource(bad)
