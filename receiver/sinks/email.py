"""Email over SMTP (aiosmtplib): STARTTLS, implicit TLS or plain, with auth; multipart text +
HTML; subject and both bodies from templates.

Recipients: the sink's ``to``/``cc``; a route may replace them through ``Delivery.params``
(``("to", "a@x, b@y")``, ``("cc", ...)``). Messages about one alert form a thread: the first
carries a Message-ID derived from the alert, updates refer to it (In-Reply-To, References).

Errors: SMTP 4xx replies, timeouts, refused or dropped connections are retryable; 5xx replies,
authentication failures, every recipient refused (5xx), TLS certificate failures and a server
lacking what the config asks for (STARTTLS, AUTH) are permanent.
"""

from __future__ import annotations

import hashlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from receiver import redaction
from receiver.envelope import Envelope
from receiver.securescore import render as secure_score
from receiver.sinkconfig import TEMPLATE_NAMES, EmailSinkSettings
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

MESSAGE_DOMAIN = "graph-alert-receiver"


def thread_id(envelope: Envelope) -> str:
    digest = hashlib.sha256(f"{envelope.tenant_id}\x1f{envelope.id}".encode()).hexdigest()[:32]
    return f"<alert-{digest}@{MESSAGE_DOMAIN}>"


def _addresses(value: str) -> list[str]:
    return [a.strip() for a in value.replace(";", ",").split(",") if a.strip()]


class EmailSink(BaseSink):
    type = "email"

    def __init__(self, config: EmailSinkSettings, *, metrics: SinkMetrics | None = None,
                 mailer: GraphMailer | None = None) -> None:
        super().__init__(config.name, metrics=metrics)
        self.config = config
        self.mailer = mailer
        self._password = config.password.get_secret_value() if config.password else None
        http.register_secret(self._password)
        self.templates = Templates("email", TEMPLATE_NAMES["email"], config.templates)
        self.score_templates = Templates("email", secure_score.TEMPLATE_NAMES["email"],
                                         config.templates)
        self._tls_context: ssl.SSLContext | None = None
        if config.tls != "none":
            self._tls_context = ssl.create_default_context(
                cafile=str(config.ca_bundle) if config.ca_bundle else None)

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
            raise PermanentError(f"email sink {self.name}: no recipients (set to, or route "
                                 "params)")
        ctx = context(envelope, delivery, self.name)
        templates, (subject, text, html) = self.templates, ("subject.txt", "body.txt",
                                                            "body.html")
        if secure_score.is_secure_score(envelope):  # its own templates and an inline chart
            ctx.update(secure_score.context(envelope))
            templates, (subject, text, html) = (self.score_templates,
                                                secure_score.TEMPLATE_NAMES["email"])
        msg = EmailMessage()
        msg["Subject"] = " ".join(templates.render(subject, ctx).split())
        msg["From"] = self.config.sender
        if to:
            msg["To"] = ", ".join(to)
        if cc:
            msg["Cc"] = ", ".join(cc)
        msg["Date"] = formatdate(localtime=False)
        root = thread_id(envelope)
        if envelope.is_update:
            msg["Message-ID"] = make_msgid(domain=MESSAGE_DOMAIN)
            msg["In-Reply-To"] = root
            msg["References"] = root
        else:
            msg["Message-ID"] = root
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
        return {"message": {
            "subject": str(msg["Subject"]),
            "body": {"contentType": "HTML", "content": content},
            "toRecipients": addresses(to), "ccRecipients": addresses(cc),
            "internetMessageHeaders": [
                {"name": name, "value": str(msg[name])}
                for name in ("X-Graph-Alert-Id", "X-Graph-Tenant-Id", "X-Graph-Severity")],
            **secure_score.graph_attachments(msg),
        }, "saveToSentItems": False}

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        if self.config.transport == "graph":
            if self.mailer is None or self.config.tenant is None:
                raise PermanentError(f"email sink {self.name}: no Graph mailer available")
            await self.mailer.send_mail(self.config.tenant, self.config.sender,
                                        self.graph_message(envelope, delivery))
            return Result(detail=f"sent with Graph sendMail as {self.config.sender}")
        msg = self.message(envelope, delivery)
        cfg = self.config
        where = f"email sink {self.name}: smtp {cfg.host}:{cfg.effective_port}"
        try:
            errors, _ = await aiosmtplib.send(
                msg, hostname=cfg.host, port=cfg.effective_port,
                username=cfg.username, password=self._password,
                use_tls=cfg.tls == "implicit", start_tls=cfg.tls == "starttls" or False,
                tls_context=self._tls_context, timeout=cfg.timeout_s)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            if codes and all(400 <= c < 500 for c in codes):
                raise RetryableError(f"{where}: every recipient refused for now ({codes})"
                                     ) from None
            raise PermanentError(f"{where}: every recipient refused ({codes})") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"{where}: authentication failed ({exc.code})",
                                 status=exc.code) from None
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
                "CERTIFICATE_VERIFY_FAILED" in str(node)):
            return PermanentError(f"{where}: TLS certificate verification failed (set ca_bundle "
                                  "or fix the server's certificate)")
        node = node.__cause__ or node.__context__
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or type(exc) is aiosmtplib.SMTPException:
        # The server lacks what the config asks for (STARTTLS, AUTH): fix the config.
        return PermanentError(f"{where}: {redaction.cut(str(exc), 200)}")
    return RetryableError(f"{where}: {type(exc).__name__}: {redaction.cut(str(exc), 200)}")
