"""Redaction before cutting (issue 15, item 1): pure functions, with explicit secrets so the
process-wide registry is not filled with test values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.redaction import ELLIPSIS, REDACTED, cut, redact

TOKEN = "QzWxTkRvMpLnHjGfSsYuKqP"
SECRETS = (f"/hooks/{TOKEN}", TOKEN)  # longest first, as the registry keeps them


def leaked(text: str, secret: str, shortest: int = 4) -> list[str]:
    return [
        secret[i : i + n]
        for n in range(shortest, len(secret) + 1)
        for i in range(len(secret) - n + 1)
        if secret[i : i + n] in text
    ]


def test_a_secret_straddling_the_cut_is_redacted_whole() -> None:
    body = "=" * 166 + f"POST /hooks/{TOKEN} HTTP/1.1"
    assert body[:200].endswith(TOKEN[:22])  # the old order (cut, then redact) leaked 22 of 23
    out = cut(body, 200, squeeze=True, secrets=SECRETS)
    assert out == "=" * 166 + f"POST {REDACTED} HTTP/1.1"
    assert leaked(out, TOKEN) == []


def test_a_secret_the_cut_ends_inside_leaves_no_prefix() -> None:
    # The other side cut its own echo: only the first 15 characters are in the text.
    for start in range(190, 200):
        text = "x" * start + TOKEN[:15]
        out = cut(text, 200, secrets=SECRETS)
        assert leaked(out, TOKEN) == [], (start, out)
        assert out.startswith("x" * start)
        kept = min(15, 200 - start)  # of the token, before the edge check
        tail = REDACTED if kept >= 4 else TOKEN[:kept]
        assert out == "x" * start + tail + (ELLIPSIS if len(text) > 200 else "")


def test_short_tails_and_ordinary_text_are_kept() -> None:
    assert cut("status 400: bad request", 200, secrets=SECRETS) == "status 400: bad request"
    assert cut("ends with " + TOKEN[:3], 200, secrets=SECRETS) == "ends with " + TOKEN[:3]
    assert cut("a" * 300, 10, secrets=SECRETS) == "a" * 10 + ELLIPSIS
    assert cut("nothing registered", 5, secrets=()) == "nothi" + ELLIPSIS


def test_redact_prefers_the_longest_secret() -> None:
    assert redact(f"GET /hooks/{TOKEN}", SECRETS) == f"GET {REDACTED}"


_SAFE = st.text(alphabet="abcdefghij0123456789 =:/.-", max_size=300)  # no letter of TOKEN


@settings(max_examples=300, deadline=None)
@given(
    before=_SAFE,
    after=_SAFE,
    limit=st.integers(min_value=0, max_value=400),
    keep=st.integers(min_value=1, max_value=len(TOKEN)),
    squeeze=st.booleans(),
)
def test_no_fragment_of_a_secret_survives_any_cut(
    before: str, after: str, limit: int, keep: int, squeeze: bool
) -> None:
    """A whole or a server-truncated echo of the secret, anywhere, cut anywhere: no fragment of
    four characters or more is left."""
    text = before + TOKEN[:keep] + (after if keep == len(TOKEN) else "")
    out = cut(text, limit, squeeze=squeeze, secrets=(TOKEN,))
    assert leaked(out, TOKEN) == []
    assert len(out) <= max(limit, 0) + len(REDACTED) + len(ELLIPSIS)
