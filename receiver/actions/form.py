"""The confirmation page's form: read bounded, and the name a person types in it."""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qs

from starlette.requests import Request

from receiver.actions.body import BodyTooLarge, read_body

__all__ = ["MAX_NAME_CHARS", "clean_name", "read_form"]

MAX_FORM_BYTES = 8192
MAX_NAME_CHARS = 100


async def read_form(request: Request, timeout_s: float) -> dict[str, str] | None:
    """An urlencoded form, bounded in size and in the time it may take to arrive (no
    multipart: the page sends a single text field); None when it cannot be read."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        return None
    try:
        body = await read_body(request, MAX_FORM_BYTES, timeout_s)
    except (BodyTooLarge, TimeoutError):
        return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items() if v}


def clean_name(raw: str) -> str:
    """A display name as typed: printable, single-line, bounded."""
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in raw)
    return " ".join(text.split())[:MAX_NAME_CHARS]
