"""Every refusal of the action endpoint: :class:`Refused`, and the pages that say why.

A step of the endpoint that will not go on raises :class:`Refused` with the page to answer and,
when the refusal is audited, its outcome: the outcome is named where the refusal is decided,
and the endpoint answers (and, for a POST, audits) in one place. Every page says that nothing
was changed, and whether the link still works.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response

from receiver.actions.audit import AuditRecord
from receiver.actions.pages import page
from receiver.graph.auth import GraphAuthError
from receiver.graph.client import GraphError, GraphUnavailable

__all__ = [
    "Refused",
    "bad_form",
    "graph_refused",
    "graph_text",
    "graph_unavailable",
    "graph_unread",
    "name_needed",
    "nothing_changed",
    "refusal",
    "store_down",
    "too_many",
    "used",
]


class Refused(Exception):
    """The endpoint's answer instead of what was asked: ``response``, a refusal page (or the
    redirect to sign in first). ``outcome`` is what the audit calls the refusal, empty for one
    never audited (a forged link, a bad form, the store down); ``details`` are the audit
    record's other fields the refusal knows (Graph's answer). A POST audits the outcome; a GET
    changes and records nothing. ``counted``: the step that refused already counted it in
    ``receiver_actions`` (a step shared by GET and POST), so the audit must not count it again."""

    def __init__(
        self, response: Response, outcome: str = "", *, counted: bool = False, **details: str
    ) -> None:
        super().__init__(outcome or str(response.status_code))
        self.response = response
        self.outcome = outcome
        self.counted = counted
        self.details = details

    @classmethod
    def because(cls, reason: str, detail: str = "", *, counted: bool = False) -> Refused:
        """The refusal page of ``reason``, audited under that outcome."""
        return cls(refusal(reason, detail), reason, counted=counted)


_REFUSALS = {
    "invalid": (
        400,
        "This link is not valid",
        "The link was changed, cut short, or signed with a key this receiver no "
        "longer has. Nothing was changed. Use the buttons of the latest message.",
    ),
    "expired": (
        410,
        "This link has expired",
        "Action links work for a limited time. Nothing was changed. Use the Defender "
        "portal, or the buttons of a newer message about this alert.",
    ),
    "wrong_tenant": (
        403,
        "This link is for another tenant",
        "The link's tenant is not served here, or the alert does not belong to "
        "it. Nothing was changed.",
    ),
    "not_found": (
        404,
        "Alert not found",
        "The alert does not exist in the tenant this link was made for: it belongs "
        "to another tenant, or it was deleted. Nothing was changed.",
    ),
    "forbidden_origin": (
        403,
        "Request from another site refused",
        "The confirmation must be sent from this receiver's own page. Nothing was changed.",
    ),
    # sign-in with Entra ID (actions.sign_in)
    "signin_required": (
        401,
        "Sign-in required",
        "This receiver acts only for people signed in with Entra ID, and this "
        "request had no current sign-in (it may have expired). Open the link "
        "again to sign in. Nothing was changed; the link still works.",
    ),
    "forbidden_csrf": (
        403,
        "This form is not from your current sign-in",
        "The confirmation form belongs to another or an older sign-in. Open the "
        "link again. Nothing was changed; the link still works.",
    ),
    "signin_expired": (
        400,
        "Sign-in expired or started elsewhere",
        "The sign-in took longer than 10 minutes, was already completed, or was "
        "not started in this browser. Open the action link again. Nothing was "
        "changed.",
    ),
    "signin_failed": (
        400,
        "Sign-in failed",
        "Entra ID did not confirm who you are. Open the action link again to "
        "retry. Nothing was changed.",
    ),
    "signin_unavailable": (
        503,
        "Entra ID is unavailable",
        "Sign-in could not be completed. Nothing was changed; the link still "
        "works: try again in a minute.",
    ),
    "wrong_signin_tenant": (
        403,
        "Signed in to another tenant",
        "This receiver accepts sign-ins of its own Entra ID tenant only. Nothing was changed.",
    ),
    "not_allowed": (
        403,
        "Not allowed to triage alerts here",
        "Your account is in none of the groups allowed to act on alerts. Ask the "
        "receiver's administrator to add you to one. Nothing was changed; the link "
        "still works for someone who is.",
    ),
    "groups_overage": (
        403,
        "Group membership could not be checked",
        "Your account is in more groups than Entra ID puts in a sign-in token "
        "(200), so membership in the allowed groups cannot be read from it. The "
        "receiver's administrator can set the app registration to emit only "
        "the groups assigned to the application (Token configuration, groups "
        "claim) and assign the allowed groups to it. Nothing was changed.",
    ),
    "no_groups_claim": (
        403,
        "Group membership could not be checked",
        "The sign-in token carries no groups claim, so membership in the "
        "allowed groups cannot be checked. The receiver's administrator must "
        "add a groups claim to the app registration's tokens (Token "
        "configuration). Nothing was changed.",
    ),
}


def refusal(reason: str, detail: str = "") -> Response:
    status, heading, message = _REFUSALS[reason]
    return page(status, "refused", heading, message, detail=detail)


def used(state: bytes | str | None) -> Response:
    """A link already used; ``state`` is its audit record (or "pending") as the link keeps it."""
    detail = ""
    if isinstance(state, bytes):
        state = state.decode()
    if state:
        try:
            record = AuditRecord.from_json(state)
        except (ValueError, TypeError):
            record = None
        if record is not None and record.at:
            when = datetime.fromtimestamp(record.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            detail = f"Used {when} by {record.by or 'someone'}: {record.outcome.replace('_', ' ')}."
        elif record is not None:
            detail = "It is being used right now."
    return page(
        409,
        "refused",
        "This link was already used",
        "Each action link works once. Nothing was changed by this request.",
        detail=detail,
    )


def store_down() -> Response:
    return page(
        503,
        "refused",
        "Try again shortly",
        "The receiver's store is unavailable. Nothing was changed.",
    )


def too_many(why: str) -> Response:
    response = page(
        429,
        "refused",
        "Too many requests",
        f"{why} Nothing was changed; the link still works: open it again in a minute.",
    )
    response.headers["Retry-After"] = "60"
    return response


def bad_form() -> Response:
    return page(
        400,
        "refused",
        "Bad form",
        "The confirmation form could not be read. Nothing was changed; open the link again.",
    )


def name_needed() -> Response:
    return page(
        400,
        "refused",
        "Your name is needed",
        "Taking an alert assigns it to you: go back and type your name. Nothing was changed.",
    )


def nothing_changed(why: str) -> Response:
    """The triage rules refused (actions/rules.py): taken by someone else, or resolved."""
    return page(409, "refused", "Nothing was changed", f"Nothing was changed: {why}.")


def graph_unread(exc: GraphError | GraphAuthError) -> Response:
    """A confirmation page whose alert Graph did not give."""
    refused = isinstance(exc, GraphError) and not isinstance(exc, GraphUnavailable)
    return page(
        502 if refused else 503,
        "refused",
        "Microsoft Graph did not answer",
        "The alert could not be read. Nothing was changed; try again.",
        detail=graph_text(exc),
    )


def graph_unavailable(exc: GraphError | GraphAuthError) -> Response:
    return page(
        503,
        "refused",
        "Microsoft Graph is unavailable",
        "The alert was not updated. The link still works: try again in a minute.",
        detail=graph_text(exc),
    )


def graph_refused(exc: GraphError) -> Response:
    return page(
        502,
        "refused",
        "Microsoft Graph refused the update",
        "The alert was not updated.",
        detail=graph_text(exc),
    )


def graph_text(exc: GraphError | GraphAuthError) -> str:
    """Graph's answer, for the page and the audit record."""
    if isinstance(exc, GraphAuthError):
        return f"no token: {exc}"
    return f"{exc.status} {exc.code}: {exc.message}" if exc.status else f"{exc.code}: {exc.message}"
