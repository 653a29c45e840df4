"""Email against a real SMTP server (aiosmtpd): plain, STARTTLS + AUTH, implicit TLS."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from receiver.simulator.tls import TlsFiles
from receiver.sinks.base import Delivery, PermanentError, RetryableError
from receiver.sinks.email import EmailSink, thread_id
from receiver.sinks.metrics import SinkMetrics
from tests.fixtures.web import free_port
from tests.sinks.conftest import make_envelope, update_of
from tests.sinks.helpers import SMTP_PASSWORD, config


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply
    data_reply: str = "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply.startswith("250"):
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return self.data_reply


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"alerts" \
        and data.password == SMTP_PASSWORD.encode()
    if ok:
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False,
                      message="535 5.7.8 Authentication credentials invalid")


@pytest.fixture
def smtp(tls_files: TlsFiles, request: pytest.FixtureRequest) -> Iterator[tuple[Mailbox, int]]:
    mode = getattr(request, "param", "none")
    box = Mailbox()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_files.cert_path, tls_files.key_path)
    port = free_port()
    kwargs: dict[str, Any] = {}
    if mode == "starttls":
        kwargs = {"tls_context": ctx, "require_starttls": True, "authenticator": _auth,
                  "auth_required": True}
    elif mode == "implicit":
        # aiosmtpd counts only STARTTLS as TLS (it would refuse AUTH here): AUTH is tested
        # on the STARTTLS server.
        kwargs = {"ssl_context": ctx}
    controller = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    yield box, port
    controller.stop()


def _sink(port: int, tls_files: TlsFiles | None = None, **extra: Any) -> EmailSink:
    data: dict[str, Any] = {"type": "email", "name": "mail", "host": "127.0.0.1", "port": port,
                            "tls": "none", "sender": "alerts@contoso.com",
                            "to": ["soc@contoso.com"], "timeout_s": 5}
    if tls_files is not None:
        data["ca_bundle"] = str(tls_files.ca_path)
    data.update(extra)
    return EmailSink(config(data), metrics=SinkMetrics())


async def test_plain_multipart_and_threading(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    sink = _sink(port, cc=["lead@contoso.com"])
    env = make_envelope()
    await sink.send(env, Delivery(route="soc"))
    await sink.send(update_of(env, status="resolved"), Delivery(route="soc"))
    (sender, rcpts, first), (_, _, second) = box.messages
    assert sender == "alerts@contoso.com"
    assert rcpts == ["soc@contoso.com", "lead@contoso.com"]
    assert first["Subject"] == f"[High] {env.title} (contoso)"
    assert first["Message-ID"] == thread_id(env)
    assert first.get_content_type() == "multipart/alternative"
    text = first.get_body(("plain",))
    html = first.get_body(("html",))
    assert text is not None and html is not None
    assert env.title in text.get_content() and env.web_url in text.get_content()
    html_text = html.get_content()
    assert "&lt;download&gt; &amp; run" in html_text and "<download>" not in html_text
    assert f'href="{env.web_url}"' in html_text
    assert second["Subject"].startswith("Updated: ")
    assert second["In-Reply-To"] == thread_id(env) == second["References"]
    assert second["Message-ID"] != first["Message-ID"]
    assert "Status is now resolved" in second.get_body(("plain",)).get_content()


async def test_route_recipients(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    sink = _sink(port)
    route = Delivery(params=(("to", "oncall@contoso.com; b@contoso.com"),))
    await sink.send(make_envelope(), route)
    (_, rcpts, msg), = box.messages
    assert rcpts == ["oncall@contoso.com", "b@contoso.com"]
    assert msg["To"] == "oncall@contoso.com, b@contoso.com"


@pytest.mark.parametrize("smtp", ["starttls"], indirect=True)
async def test_starttls_with_auth(smtp: tuple[Mailbox, int], tls_files: TlsFiles) -> None:
    box, port = smtp
    sink = _sink(port, tls_files, tls="starttls", username="alerts", password=SMTP_PASSWORD)
    await sink.send(make_envelope(), Delivery())
    assert len(box.messages) == 1
    wrong = _sink(port, tls_files, tls="starttls", username="alerts", password="wrong-pass")
    with pytest.raises(PermanentError, match="authentication failed") as info:
        await wrong.send(make_envelope(), Delivery())
    assert SMTP_PASSWORD not in str(info.value)
    untrusted = _sink(port, None, tls="starttls", username="alerts", password=SMTP_PASSWORD)
    with pytest.raises(PermanentError, match="certificate verification failed"):
        await untrusted.send(make_envelope(), Delivery())
    plain = _sink(port, tls_files, tls="none", username="alerts", password=SMTP_PASSWORD)
    with pytest.raises(PermanentError):  # the server requires STARTTLS first
        await plain.send(make_envelope(), Delivery())
    assert len(box.messages) == 1


@pytest.mark.parametrize("smtp", ["implicit"], indirect=True)
async def test_implicit_tls(smtp: tuple[Mailbox, int], tls_files: TlsFiles) -> None:
    box, port = smtp
    sink = _sink(port, tls_files, tls="implicit")
    await sink.send(make_envelope(), Delivery())
    assert len(box.messages) == 1
    with pytest.raises(PermanentError, match="certificate verification failed"):
        await _sink(port, None, tls="implicit").send(make_envelope(), Delivery())
    with pytest.raises(RetryableError):  # plain text to a TLS port: no greeting, a timeout
        await _sink(port, None, tls="none", timeout_s=0.5).send(make_envelope(), Delivery())


async def test_smtp_replies_are_classified(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    sink = _sink(port)
    box.data_reply = "451 4.3.0 try again later"
    with pytest.raises(RetryableError) as info:
        await sink.send(make_envelope(), Delivery())
    assert info.value.status == 451
    box.data_reply = "554 5.7.1 rejected"
    with pytest.raises(PermanentError):
        await sink.send(make_envelope(), Delivery())
    box.data_reply = "250 OK"
    box.refuse = {"soc@contoso.com": "450 4.2.1 mailbox busy"}
    with pytest.raises(RetryableError, match="recipient"):
        await sink.send(make_envelope(), Delivery())
    box.refuse = {"soc@contoso.com": "550 5.1.1 no such user"}
    with pytest.raises(PermanentError, match="recipient"):
        await sink.send(make_envelope(), Delivery())
    assert box.messages == []


async def test_unreachable_server_is_retryable() -> None:
    sink = _sink(free_port())
    with pytest.raises(RetryableError):
        await sink.send(make_envelope(), Delivery())


async def test_no_recipients_is_permanent(smtp: tuple[Mailbox, int]) -> None:
    _, port = smtp
    with pytest.raises(PermanentError, match="no recipients"):
        await _sink(port, to=[]).send(make_envelope(), Delivery())
