"""What the sinks need to present a ``secure_score`` event: the extra template context and the
chart. Sinks call these when ``envelope.kind`` is ``secure_score`` and render their own
``secure_score*`` templates (receiver/sinks/templates/<type>/); everything here reads the
event's ``raw`` data (receiver.securescore.events), nothing else.
"""

from __future__ import annotations

import base64
from email.message import EmailMessage
from typing import Any

from receiver.envelope import Envelope
from receiver.securescore import chart
from receiver.securescore.events import KIND, points

CHART_CID = "securescore-trend@graph-alert-receiver"  # the inline chart's Content-ID
CHART_FILENAME = "securescore-trend.png"
REASON_LABELS = {
    "drop": "Secure Score drop",
    "control": "Secure Score control regression",
    "digest": "Secure Score weekly digest",
}

# The template names each sink type renders for secure_score events.
TEMPLATE_NAMES: dict[str, tuple[str, ...]] = {
    "email": ("secure_score_subject.txt", "secure_score_body.txt", "secure_score_body.html"),
    "teams": ("secure_score.json",),
}


def is_secure_score(envelope: Envelope) -> bool:
    return envelope.kind == KIND


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def context(envelope: Envelope) -> dict[str, Any]:
    """``score`` for the templates: the raw data plus ready-made labels."""
    raw = envelope.raw
    trend = _list(raw.get("trend"))
    change = float(raw.get("change") or 0.0)
    score = dict(raw)
    score.update(
        reason_label=REASON_LABELS.get(str(raw.get("reason")), "Secure Score"),
        current=points(float(raw.get("currentScore") or 0.0)),
        maximum=points(float(raw.get("maxScore") or 0.0)),
        percent=f"{float(raw.get('percentage') or 0.0):g}",
        change_label=f"{change:+g}",
        change_span="since the day before"
        if raw.get("previousScore") is not None
        else f"over {len(trend)} days",
        controls=_list(raw.get("controls")),
        actions=_list(raw.get("actions")),
        trend=trend,
        comparative=_list(raw.get("averageComparativeScores")),
        chart_cid=CHART_CID,
        points=points,
    )
    return {"score": score}


def chart_png(envelope: Envelope) -> bytes | None:
    """The trend chart of the event, or None when it carries no trend."""
    trend = _list(envelope.raw.get("trend"))
    try:
        dates = [str(t["date"]) for t in trend]
        scores = [float(t["currentScore"]) for t in trend]
        maximum = max((float(t.get("maxScore") or 0.0) for t in trend), default=0.0)
    except (KeyError, TypeError, ValueError):
        return None
    if not scores:
        return None
    who = envelope.tenant or envelope.tenant_id
    return chart.render(
        dates, scores, maximum, title=f"Secure Score, {who}: last {len(scores)} days"
    )


def attach_chart(message: EmailMessage, envelope: Envelope) -> None:
    """Attach the chart to the message's HTML part as an inline image (multipart/related),
    where the HTML's ``cid:`` reference finds it."""
    png = chart_png(envelope)
    html = message.get_body(("html",))
    if png is None or html is None:
        return
    html.add_related(
        png,
        maintype="image",
        subtype="png",
        cid=f"<{CHART_CID}>",
        filename=CHART_FILENAME,
        disposition="inline",
    )


def graph_attachments(message: EmailMessage) -> dict[str, Any]:
    """The message's inline images as Graph sendMail ``attachments`` (fileAttachment,
    ``isInline``, ``contentId``), or nothing when it has none."""
    out = []
    for part in message.walk():
        cid = str(part.get("Content-ID") or "").strip("<>")
        if cid and part.get_content_maintype() == "image":
            content = part.get_content()
            out.append(
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": part.get_filename() or cid,
                    "contentType": part.get_content_type(),
                    "contentBytes": base64.b64encode(content).decode(),
                    "isInline": True,
                    "contentId": cid,
                }
            )
    return {"attachments": out} if out else {}
