"""Graph alert resources and ids, parsed strictly before they become request paths.

A notification's ``resource`` (``security/alerts/{id}``) and an action link's alert id come
from outside: a notification is believed once its clientState matches, and a path built from
it is requested with the app's token. httpx resolves ``.`` and ``..`` segments, so
``security/alerts/../../../_sim/tenants`` was a GET of ``/_sim/tenants`` (issue 15). So:

- a resource is exactly a known collection (``security/alerts``, ``security/alerts_v2``,
  ``security/incidents``, any case) and one id segment, nothing before or after;
- an id is 1-256 characters of RFC 3986 path characters without percent-encoding
  (``A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @``), and not ``.`` or ``..``. Graph's
  alert and incident ids (GUIDs, ``da637…_-123``, digits) fit; a ``%`` can only be someone
  encoding a ``/`` or a ``..`` past a check, so it is refused, not decoded;
- the path is built with the id quoted as one segment (``quote(id, safe="")``), so even a
  character this module let through cannot start a new segment.

Pure: no I/O. Anything else raises :class:`BadResource`, and the caller refuses it (counted)
without calling Graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "COLLECTIONS",
    "AlertResource",
    "BadResource",
    "alert_path",
    "check_id",
    "parse_resource",
]

COLLECTIONS = ("security/alerts", "security/alerts_v2", "security/incidents")
MAX_ID_LENGTH = 256
_ID = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@]{1,%d}" % MAX_ID_LENGTH)  # noqa: UP031


class BadResource(ValueError):
    """A resource or id that is not one alert or incident of a known collection."""


@dataclass(frozen=True, slots=True)
class AlertResource:
    collection: str  # one of COLLECTIONS, lower case
    id: str  # as Graph gave it, checked by check_id

    @property
    def path(self) -> str:
        """The Graph path, the id quoted as one segment."""
        return f"{self.collection}/{quote(self.id, safe='')}"


def check_id(alert_id: str) -> str:
    """``alert_id`` when it can be a Graph alert or incident id, else BadResource."""
    if not isinstance(alert_id, str) or not _ID.fullmatch(alert_id) or alert_id in (".", ".."):
        raise BadResource("not a Graph id (1-256 path characters, no '%', not '.' or '..')")
    return alert_id


def alert_path(collection: str, alert_id: str) -> str:
    """The Graph path of one item of ``collection`` (checked and quoted)."""
    if collection not in COLLECTIONS:
        raise BadResource(f"unknown collection {collection!r}")
    return AlertResource(collection, check_id(alert_id)).path


def parse_resource(resource: str) -> AlertResource:
    """A notification's resource: ``{collection}/{id}`` (one leading or trailing ``/``
    tolerated), else BadResource. The message never repeats the resource (it is attacker
    text; the caller keeps the entry for a human)."""
    text = resource.removeprefix("/").removesuffix("/") if isinstance(resource, str) else ""
    collection, sep, alert_id = text.rpartition("/")
    if not sep or collection.lower() not in COLLECTIONS:
        raise BadResource(
            "not a known collection and one id "
            "(security/alerts, security/alerts_v2 or security/incidents)"
        )
    return AlertResource(collection.lower(), check_id(alert_id))
