"""Email over SMTP (aiosmtplib): STARTTLS, implicit TLS or plain, with auth; multipart text +
HTML; subject and both bodies from templates.

Recipients: the sink's ``to``/``cc``; a route may replace them through ``Delivery.params``
(``("to", "a@x, b@y")``, ``("cc", ...)``).

Threads: every message about one alert (or one group) is one thread in the reader's client.
The first carries ``Message-ID: <alert-H@domain>``, H a hash of (sink, tenant id, alert id),
and each update its own id derived from the version, with ``In-Reply-To`` and ``References``
naming the first; nothing is stored, so a restart, a retry or a second worker computes the
same ids (a retried message keeps its id, and readers drop the duplicate). The subject is the
same on every message (no "Updated:" prefix, no severity that may change): Gmail needs a
matching subject as well as the references, and Outlook groups by the subject
(``Thread-Topic``) and the ``Thread-Index`` header, which carries a GUID derived from the same
hash. What changed is said in the body.

Graph transport: sendMail's JSON message cannot carry ``In-Reply-To``/``References``
(``internetMessageHeaders`` takes only ``x-`` headers), so alert and group mail goes as MIME
(``Content-Type: text/plain``, the base64 message): the same bytes SMTP would send. Secure
Score mail (no thread) keeps the JSON form with ``saveToSentItems: false``.

Errors: SMTP 4xx replies, timeouts, refused or dropped connections are retryable; 5xx replies,
authentication failures, every recipient refused (5xx), TLS certificate failures and a server
lacking what the config asks for (STARTTLS, AUTH) are permanent.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any

import aiosmtplib

from receiver import redaction
from receiver.config.sinks import TEMPLATE_NAMES, EmailSinkSettings
from receiver.envelope import Envelope
from receiver.securescore import render as secure_score
from receiver.sinks import http
from receiver.sinks.base import (
    BaseSink,
    Delivery,
    GraphMailer,
    PermanentError,
    Result,
    RetryableError,
    SinkError,
)
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates, context

MESSAGE_DOMAIN = "graph-alert-receiver"  # the Message-ID domain when the sender has none
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_FALLBACK_TIME = datetime(2020, 1, 1, tzinfo=UTC)  # a thread root with no readable date


def _thread_digest(sink: str, envelope: Envelope) -> bytes:
    return hashlib.sha256(f"{sink}\x1f{envelope.tenant_id}\x1f{envelope.id}".encode()).digest()


def _domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip().lower()
    return domain if domain and all(c.isalnum() or c in ".-" for c in domain) else MESSAGE_DOMAIN


def thread_id(sink: str, envelope: Envelope, sender: str = "") -> str:
    """The Message-ID of the first message about an alert (or group): the thread's root.
    Deterministic per (sink, tenant, alert id), so every worker and every restart agrees."""
    return f"<alert-{_thread_digest(sink, envelope).hex()[:32]}@{_domain(sender)}>"


def message_id(sink: str, envelope: Envelope, sender: str = "") -> str:
    """The Message-ID of this message: the root for a first message, else one per version
    (a retry of the same version gets the same id; readers keep one copy)."""
    if not envelope.is_update:
        return thread_id(sink, envelope, sender)
    key = "\x1f".join(
        (sink, envelope.tenant_id, envelope.id, envelope.version, ",".join(envelope.changes))
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<update-{digest}@{_domain(sender)}>"


def _filetime(value: str) -> int:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        when = _FALLBACK_TIME
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, int((when - _FILETIME_EPOCH).total_seconds() * 10_000_000))


def thread_index(sink: str, envelope: Envelope) -> str:
    """Outlook's ``Thread-Index`` (PidTagConversationIndex, MS-OXOMSG 2.2.1.3): a 22-byte
    header (0x01, the 40 high bits of the root's FILETIME, a GUID) shared by the thread, and
    for an update one 5-byte response level (time delta since the root). The GUID and times
    come from the alert, so every message of a thread carries the same header."""
    digest = _thread_digest(sink, envelope)
    root_time = _filetime(envelope.created_at or envelope.version) >> 24
    header = b"\x01" + root_time.to_bytes(5, "big") + digest[:16]
    if not envelope.is_update:
        return base64.b64encode(header).decode()
    delta = max(0, _filetime(envelope.version) - (root_time << 24))
    # The DC bit set: a coarser delta, for replies years after the root.
    level = (
        (delta >> 18) & 0x7FFFFFFF if delta < 1 << 49 else (1 << 31) | ((delta >> 23) & 0x7FFFFFFF)
    )
    version = hashlib.sha256(message_id(sink, envelope).encode()).digest()
    block = level.to_bytes(4, "big") + bytes([version[0] & 0xF0])  # random nibble, sequence 0
    return base64.b64encode(header + block).decode()


def thread_title(envelope: Envelope) -> str:
    """What the subject names, the same for every message of the thread: the alert's title,
    or for a group what it is grouped on (its title counts members and would change)."""
    if envelope.kind != "group":
        return envelope.title
    group = envelope.raw.get("group") if isinstance(envelope.raw, dict) else None
    labels = group.get("labels") if isinstance(group, dict) else None
    labels = {str(k): str(v) for k, v in labels.items() if v} if isinstance(labels, dict) else {}
    incident = labels.pop("incident_id", "")
    labels.pop("tenant", None)
    labels.pop("tenant_id", None)
    shown = ", ".join(f"{k}={v}" for k, v in labels.items())
    if incident:
        return f"Incident {incident}" + (f" ({shown})" if shown else "")
    return f"Alerts grouped by {shown}" if shown else "Grouped alerts"


def _addresses(value: str) -> list[str]:
    return [a.strip() for a in value.replace(";", ",").split(",") if a.strip()]


class EmailSink(BaseSink):
    type = "email"

    def __init__(
        self,
        config: EmailSinkSettings,
        *,
        metrics: SinkMetrics | None = None,
        mailer: GraphMailer | None = None,
    ) -> None:
        super().__init__(config.name, metrics=metrics)
        self.config = config
        self.mailer = mailer
        self._password = config.password.get_secret_value() if config.password else None
        http.register_secret(self._password)
        self.templates = Templates("email", TEMPLATE_NAMES["email"], config.templates)
        self.score_templates = Templates(
            "email", secure_score.TEMPLATE_NAMES["email"], config.templates
        )
        self._tls_context: ssl.SSLContext | None = None
        if config.tls != "none":
            self._tls_context = ssl.create_default_context(
                cafile=str(config.ca_bundle) if config.ca_bundle else None
            )

    def recipients(self, delivery: Delivery) -> tuple[list[str], list[str]]:
        params: dict[str, list[str]] = {}
        for key, value in delivery.params:
            params.setdefault(key, []).extend(_addresses(value))
        to = params.get("to", list(self.config.to))
        cc = params.get("cc", list(self.config.cc))
        return to, cc

    def message(self, envelope: Envelope, delivery: Delivery) -> EmailMessage:
        to, cc = self.recipients(delivery)
        if not to and not cc:
            raise PermanentError(f"email sink {self.name}: no recipients (set to, or route params)")
        ctx = context(envelope, delivery, self.name, thread_title=thread_title(envelope))
        templates, (subject, text, html) = self.templates, ("subject.txt", "body.txt", "body.html")
        if secure_score.is_secure_score(envelope):  # its own templates and an inline chart
            ctx.update(secure_score.context(envelope))
            templates, (subject, text, html) = (
                self.score_templates,
                secure_score.TEMPLATE_NAMES["email"],
            )
        msg = EmailMessage()
        msg["Subject"] = " ".join(templates.render(subject, ctx).split())
        msg["From"] = self.config.sender
        if to:
            msg["To"] = ", ".join(to)
        if cc:
            msg["Cc"] = ", ".join(cc)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id(self.name, envelope, self.config.sender)
        if envelope.is_update:
            root = thread_id(self.name, envelope, self.config.sender)
            msg["In-Reply-To"] = root
            msg["References"] = root
        msg["Thread-Topic"] = str(msg["Subject"])
        msg["Thread-Index"] = thread_index(self.name, envelope)
        msg["X-Graph-Alert-Id"] = envelope.id
        msg["X-Graph-Tenant-Id"] = envelope.tenant_id
        msg["X-Graph-Severity"] = envelope.severity
        msg.set_content(templates.render(text, ctx) + "\n")
        msg.add_alternative(templates.render(html, ctx) + "\n", subtype="html")
        if secure_score.is_secure_score(envelope):
            secure_score.attach_chart(msg, envelope)
        return msg

    def graph_message(self, envelope: Envelope, delivery: Delivery) -> dict[str, Any]:
        """The same message as Graph's sendMail body (HTML, with the alert headers)."""
        msg = self.message(envelope, delivery)
        html = msg.get_body(("html",))
        content = html.get_content() if html is not None else ""

        def addresses(values: list[str]) -> list[dict[str, Any]]:
            return [{"emailAddress": {"address": a}} for a in values]

        to, cc = self.recipients(delivery)
        return {
            "message": {
                "subject": str(msg["Subject"]),
                "body": {"contentType": "HTML", "content": content},
                "toRecipients": addresses(to),
                "ccRecipients": addresses(cc),
                "internetMessageHeaders": [
                    {"name": name, "value": str(msg[name])}
                    for name in ("X-Graph-Alert-Id", "X-Graph-Tenant-Id", "X-Graph-Severity")
                ],
                **secure_score.graph_attachments(msg),
            },
            "saveToSentItems": False,
        }

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:  # noqa: C901 - 11, older than the limit
        if self.config.transport == "graph":
            if self.mailer is None or self.config.tenant is None:
                raise PermanentError(f"email sink {self.name}: no Graph mailer available")
            if secure_score.is_secure_score(envelope):
                await self.mailer.send_mail(
                    self.config.tenant, self.config.sender, self.graph_message(envelope, delivery)
                )
                return Result(detail=f"sent with Graph sendMail as {self.config.sender}")
            mime = self.message(envelope, delivery)
            await self.mailer.send_mime(
                self.config.tenant, self.config.sender, mime.as_bytes(policy=SMTP)
            )
            return Result(
                detail=f"sent {mime['Message-ID']} with Graph sendMail (MIME) as "
                f"{self.config.sender}"
            )
        msg = self.message(envelope, delivery)
        cfg = self.config
        where = f"email sink {self.name}: smtp {cfg.host}:{cfg.effective_port}"
        try:
            errors, _ = await aiosmtplib.send(
                msg,
                hostname=cfg.host,
                port=cfg.effective_port,
                username=cfg.username,
                password=self._password,
                use_tls=cfg.tls == "implicit",
                start_tls=cfg.tls == "starttls" or False,
                tls_context=self._tls_context,
                timeout=cfg.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            if codes and all(400 <= c < 500 for c in codes):
                raise RetryableError(
                    f"{where}: every recipient refused for now ({codes})"
                ) from None
            raise PermanentError(f"{where}: every recipient refused ({codes})") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise PermanentError(
                f"{where}: authentication failed ({exc.code})", status=exc.code
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_error(where, exc.code, exc.message) from None
        except aiosmtplib.SMTPException as exc:
            raise _transport_error(where, exc) from None
        except (OSError, ssl.SSLError) as exc:
            raise _transport_error(where, exc) from None
        refused = sorted(errors)
        detail = f"sent {msg['Message-ID']}"
        if refused:
            detail += f"; {len(refused)} recipient(s) refused"
        return Result(detail=detail)


def _reply_error(where: str, code: int, message: str) -> SinkError:
    text = f"{where}: SMTP {code} {redaction.cut(message, 200, squeeze=True)}"
    if 400 <= code < 500:
        return RetryableError(text, status=code)
    return PermanentError(text, status=code)


def _transport_error(where: str, exc: BaseException) -> SinkError:
    node: BaseException | None = exc
    while node is not None:
        if isinstance(node, ssl.SSLCertVerificationError) or (
            "CERTIFICATE_VERIFY_FAILED" in str(node)
        ):
            return PermanentError(
                f"{where}: TLS certificate verification failed (set ca_bundle "
                "or fix the server's certificate)"
            )
        node = node.__cause__ or node.__context__
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or type(exc) is aiosmtplib.SMTPException:
        # The server lacks what the config asks for (STARTTLS, AUTH): fix the config.
        return PermanentError(f"{where}: {redaction.cut(str(exc), 200)}")
    return RetryableError(f"{where}: {type(exc).__name__}: {redaction.cut(str(exc), 200)}")
