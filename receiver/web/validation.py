"""The notification validator: pure functions, no I/O.

From a request body and the subscriptions this deployment owns to stream entries and a count
of rejections by reason. The web endpoint is a thin adapter around it.
"""

from __future__ import annotations

import hmac
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver.store.entries import NotificationEntry
from receiver.store.registry import SubscriptionRecord

CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
MAX_TOKEN_LENGTH = 1024
MAX_FIELD_LENGTH = 2048
MAX_VALIDATION_TOKEN_LENGTH = 16_384  # a JWT; Graph's are about 1.5 KB
# Graph's subscription ids and Entra ID tenant ids are GUIDs. Checked before anything is
# looked up, so forged ids of any other shape cost no Redis read and no cache memory.
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")

# Rejection reasons (metric label values; a fixed set).
MALFORMED_JSON = "malformed_json"
BAD_ENVELOPE = "bad_envelope"
BAD_ITEM = "bad_item"
UNKNOWN_SUBSCRIPTION = "unknown_subscription"
CLIENT_STATE_MISMATCH = "client_state_mismatch"
TENANT_NOT_ALLOWED = "tenant_not_allowed"
TENANT_MISMATCH = "tenant_mismatch"
BAD_VALIDATION_TOKEN = "bad_validation_token"  # noqa: S105 - a reason label
BAD_ENCRYPTED_CONTENT = "bad_encrypted_content"
# Authentic encrypted content (signature good) that is not a UTF-8 JSON object: 400, not 403.
BAD_RESOURCE_DATA = "bad_resource_data"
BODY_TIMEOUT = "body_timeout"  # the body did not arrive within web.body_timeout_s
REASONS = (
    MALFORMED_JSON,
    BAD_ENVELOPE,
    BAD_ITEM,
    UNKNOWN_SUBSCRIPTION,
    CLIENT_STATE_MISMATCH,
    TENANT_NOT_ALLOWED,
    TENANT_MISMATCH,
    BAD_VALIDATION_TOKEN,
    BAD_ENCRYPTED_CONTENT,
    BAD_RESOURCE_DATA,
    BODY_TIMEOUT,
)
# Reasons that mean "not from Graph for us" (403) rather than "not well-formed" (400).
FORBIDDEN_REASONS = frozenset(
    {
        UNKNOWN_SUBSCRIPTION,
        CLIENT_STATE_MISMATCH,
        TENANT_NOT_ALLOWED,
        TENANT_MISMATCH,
        BAD_VALIDATION_TOKEN,
        BAD_ENCRYPTED_CONTENT,
    }
)


class BodyError(ValueError):
    """The body as a whole is unusable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_validation_token(token: str) -> bool:
    """A handshake token is echoed back: refuse absurd ones (too long, control characters)."""
    return 0 < len(token) <= MAX_TOKEN_LENGTH and all(c.isprintable() for c in token)


@dataclass(frozen=True, slots=True)
class Item:
    """One well-formed item of a notification batch, not yet authorized."""

    subscription_id: str
    tenant_id: str
    client_state: str = field(repr=False)
    change_type: str = ""
    resource: str = ""
    resource_id: str = ""
    odata_type: str = ""
    lifecycle_event: str = ""
    subscription_expires: str = ""
    encrypted_content: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def is_lifecycle(self) -> bool:
        return bool(self.lifecycle_event)


@dataclass
class Batch:
    items: list[Any]
    validation_tokens: list[str]


def parse_body(body: bytes) -> Batch:
    """``{"value": [...], "validationTokens": [...]?}`` or BodyError."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise BodyError(MALFORMED_JSON) from None
    if not isinstance(payload, dict):
        raise BodyError(BAD_ENVELOPE)
    items = payload.get("value")
    if not isinstance(items, list) or not items:
        raise BodyError(BAD_ENVELOPE)
    tokens = payload.get("validationTokens", [])
    # JWTs are ASCII: anything else (a lone surrogate, say) is not a token and must not
    # reach the JWT library, which would fail encoding it.
    if not isinstance(tokens, list) or not all(
        isinstance(t, str) and t.isascii() and len(t) <= MAX_VALIDATION_TOKEN_LENGTH for t in tokens
    ):
        raise BodyError(BAD_ENVELOPE)
    return Batch(items=items, validation_tokens=tokens)


def _encodable(value: str) -> bool:
    """UTF-8 can carry it: JSON's ``\\ud800`` escapes decode to lone surrogates, which no
    Redis key, comparison or log line can encode."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _str(raw: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None:
        return None if required else ""
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH or not _encodable(value):
        return None
    if required and not value:
        return None
    return value


def is_guid(value: str) -> bool:
    return len(value) == 36 and _GUID.fullmatch(value) is not None


def check_item(raw: Any) -> Item | None:  # noqa: C901 - 13, older than the limit
    """Schema check of one item; None when it is not a well-formed Graph notification."""
    if not isinstance(raw, dict):
        return None
    sub = _str(raw, "subscriptionId", required=True)
    tenant = _str(raw, "tenantId", required=True)
    state = _str(raw, "clientState", required=False)
    expires = _str(raw, "subscriptionExpirationDateTime", required=False)
    if sub is None or tenant is None or state is None or expires is None:
        return None
    if not is_guid(sub) or not is_guid(tenant):
        return None
    lifecycle = raw.get("lifecycleEvent")
    if lifecycle is not None:
        if lifecycle not in LIFECYCLE_EVENTS:
            return None
        return Item(
            sub,
            tenant,
            state,
            lifecycle_event=lifecycle,
            subscription_expires=expires,
            resource=_str(raw, "resource", required=False) or "",
        )
    change = raw.get("changeType")
    resource = _str(raw, "resource", required=True)
    if not isinstance(change, str) or resource is None:
        return None
    # Graph may join several change types; an item describes one change.
    if change not in CHANGE_TYPES:
        return None
    resource_id = odata_type = ""
    data = raw.get("resourceData")
    if data is not None:
        if not isinstance(data, dict):
            return None
        rid, otype = data.get("id", ""), data.get("@odata.type", "")
        if (
            not isinstance(rid, str)
            or not isinstance(otype, str)
            or len(rid) > MAX_FIELD_LENGTH
            or not _encodable(rid)
            or not _encodable(otype)
        ):
            return None
        resource_id, odata_type = rid, otype[:256]
    if not resource_id:
        resource_id = resource.rstrip("/").rsplit("/", 1)[-1]
    encrypted = raw.get("encryptedContent")
    if encrypted is not None and not isinstance(encrypted, dict):
        return None
    return Item(
        sub,
        tenant,
        state,
        change_type=change,
        resource=resource,
        resource_id=resource_id,
        odata_type=odata_type,
        subscription_expires=expires,
        encrypted_content=encrypted,
    )


def authorize(
    item: Item, record: SubscriptionRecord | None, allowed_tenants: frozenset[str]
) -> str | None:
    """Why the item is not ours to accept, or None. The clientState is compared in constant
    time; the check order leaks nothing about a subscription's clientState."""
    if record is None:
        return UNKNOWN_SUBSCRIPTION
    if not hmac.compare_digest(item.client_state.encode(), record.client_state.encode()):
        return CLIENT_STATE_MISMATCH
    if item.tenant_id.lower() not in allowed_tenants:
        return TENANT_NOT_ALLOWED
    if item.tenant_id.lower() != record.tenant_id.lower():
        return TENANT_MISMATCH
    return None


@dataclass
class Outcome:
    entries: list[NotificationEntry] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    def status_if_empty(self) -> int:
        """The status for a batch none of whose items was accepted."""
        return 403 if set(self.rejected) <= FORBIDDEN_REASONS else 400

    @property
    def answer_accepted(self) -> bool:
        """Answer 202 whatever was refused: an item carried a good clientState but failed its
        validation token. concepts/change-notifications-with-resource-data.md, "How to
        validate": "Make sure to always send an `HTTP 202 Accepted` status code as part of the
        response to the change notification." and "Accepting a change notification [...]
        prevents any potential rogue actors from finding out if they passed or failed
        validation. You can always choose to ignore an invalid change notification after you
        receive it." So such items are dropped, counted and logged (rate-limited), and the
        answer is the same empty 202 a valid batch gets."""
        return BAD_VALIDATION_TOKEN in self.rejected


# A hook for rich notifications: (item, tokens) -> (reason or None, decrypted JSON or "").
RichCheck = Callable[[Item], tuple[str | None, str]]


def screen(items: list[Any], out: Outcome) -> list[Item]:
    """The well-formed items (schema, GUID ids, encodable text); the rest counted in ``out``.
    Cheap and without I/O: it runs before any registry lookup or token check."""
    checked = []
    for raw in items:
        item = check_item(raw)
        if item is None:
            out.rejected[BAD_ITEM] += 1
        else:
            checked.append(item)
    return checked


def authorize_all(
    items: list[Item],
    lookup: Mapping[str, SubscriptionRecord],
    allowed_tenants: frozenset[str],
    out: Outcome,
) -> list[Item]:
    """The items whose subscription, clientState and tenant are ours; the rest counted."""
    kept = []
    for item in items:
        reason = authorize(item, lookup.get(item.subscription_id), allowed_tenants)
        if reason is None:
            kept.append(item)
        else:
            out.rejected[reason] += 1
    return kept


def accept(
    items: list[Item], received_at_ms: int, out: Outcome, rich: RichCheck | None = None
) -> Outcome:
    """Authorized items become entries once the rich check (if any) passes them."""
    for item in items:
        resource_data = ""
        if rich is not None:
            reason, resource_data = rich(item)
            if reason is not None:
                out.rejected[reason] += 1
                continue
        out.entries.append(
            NotificationEntry(
                tenant_id=item.tenant_id.lower(),
                subscription_id=item.subscription_id,
                change_type=item.change_type,
                resource=item.resource,
                resource_id=item.resource_id,
                odata_type=item.odata_type,
                lifecycle_event=item.lifecycle_event,
                subscription_expires=item.subscription_expires,
                received_at_ms=received_at_ms,
                source="push",
                resource_data=resource_data,
            )
        )
    return out


def validate_items(
    items: list[Any],
    lookup: Mapping[str, SubscriptionRecord],
    allowed_tenants: frozenset[str],
    received_at_ms: int,
    rich: RichCheck | None = None,
) -> Outcome:
    """Check every item; valid ones become entries, the rest are counted by reason."""
    out = Outcome()
    authorized = authorize_all(screen(items, out), lookup, allowed_tenants, out)
    return accept(authorized, received_at_ms, out, rich)


def subscription_ids(items: list[Item]) -> set[str]:
    """The subscription ids well-formed items name (for one registry lookup)."""
    return {item.subscription_id for item in items}
