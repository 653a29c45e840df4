"""Email against a real SMTP server (aiosmtpd): plain, STARTTLS + AUTH, implicit TLS."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from receiver.envelope import Envelope
from receiver.graph.client import GraphError, client_for
from receiver.pipeline.writeback import GraphMail
from receiver.routing.grouping import summarize
from receiver.simulator.tls import TlsFiles
from receiver.sinks.base import Delivery, PermanentError, RetryableError
from receiver.sinks.email import EmailSink, thread_id
from receiver.sinks.metrics import SinkMetrics
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import free_port
from tests.graph.helpers import sim_settings
from tests.sinks.conftest import make_envelope, update_of
from tests.sinks.helpers import SMTP_PASSWORD, config

SENDER = "alerts@contoso.com"


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply
    data_reply: str = "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
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
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"alerts"
        and data.password == SMTP_PASSWORD.encode()
    )
    if ok:
        return AuthResult(success=True)
    return AuthResult(
        success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
    )


@pytest.fixture
def smtp(tls_files: TlsFiles, request: pytest.FixtureRequest) -> Iterator[tuple[Mailbox, int]]:
    mode = getattr(request, "param", "none")
    box = Mailbox()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_files.cert_path, tls_files.key_path)
    port = free_port()
    kwargs: dict[str, Any] = {}
    if mode == "starttls":
        kwargs = {
            "tls_context": ctx,
            "require_starttls": True,
            "authenticator": _auth,
            "auth_required": True,
        }
    elif mode == "implicit":
        # aiosmtpd counts only STARTTLS as TLS (it would refuse AUTH here): AUTH is tested
        # on the STARTTLS server.
        kwargs = {"ssl_context": ctx}
    controller = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    yield box, port
    controller.stop()


def _sink(port: int, tls_files: TlsFiles | None = None, **extra: Any) -> EmailSink:
    data: dict[str, Any] = {
        "type": "email",
        "name": "mail",
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "sender": SENDER,
        "to": ["soc@contoso.com"],
        "timeout_s": 5,
    }
    if tls_files is not None:
        data["ca_bundle"] = str(tls_files.ca_path)
    data.update(extra)
    return EmailSink(config(data), metrics=SinkMetrics())


def _thread_index(msg: EmailMessage) -> bytes:
    return base64.b64decode(str(msg["Thread-Index"]))


def _assert_one_thread(sink_name: str, env: Envelope, messages: list[EmailMessage]) -> None:
    """What mail clients thread on: the root's Message-ID, the updates' In-Reply-To and
    References naming it, one subject (and Thread-Topic), one Thread-Index header block."""
    first, *updates = messages
    root = thread_id(sink_name, env, SENDER)
    assert first["Message-ID"] == root
    assert root.startswith("<alert-") and root.endswith("@contoso.com>")
    assert first["In-Reply-To"] is None and first["References"] is None
    ids = [str(m["Message-ID"]) for m in messages]
    assert len(set(ids)) == len(ids)
    for update in updates:
        assert update["In-Reply-To"] == root == update["References"]
    assert len({str(m["Subject"]) for m in messages}) == 1
    # (a long Thread-Topic folds after its colon; Python's parser keeps that one space)
    assert all(str(m["Thread-Topic"]).strip() == m["Subject"] for m in messages)
    header = _thread_index(first)
    assert len(header) == 22 and header[0] == 1
    for update in updates:
        index = _thread_index(update)
        assert len(index) == 27 and index[:22] == header  # one response level each


async def test_plain_multipart_and_a_three_message_thread(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    sink = _sink(port, cc=["lead@contoso.com"])
    env = make_envelope()
    taken = update_of(env, status="inProgress", assigned_to="adele@contoso.com")
    resolved = replace(
        update_of(taken, status="resolved", classification="truePositive"),
        updated_at="2026-03-01T12:30:00Z",
    )
    for version in (env, taken, resolved):
        await sink.send(version, Delivery(route="soc"))
    (sender, rcpts, first), (_, _, second), (_, _, third) = box.messages
    assert sender == SENDER
    assert rcpts == ["soc@contoso.com", "lead@contoso.com"]
    assert first["Subject"] == f"[Security alert] {env.title} (contoso)"
    _assert_one_thread("mail", env, [first, second, third])
    assert first.get_content_type() == "multipart/alternative"
    text = first.get_body(("plain",))
    html = first.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().splitlines()[:3] == [
        "New: High severity alert, status new",
        "",
        env.title,
    ]
    assert env.title in text.get_content() and env.web_url in text.get_content()
    html_text = html.get_content()
    assert "&lt;download&gt; &amp; run" in html_text and "<download>" not in html_text
    assert f'href="{env.web_url}"' in html_text
    body2 = second.get_body(("plain",)).get_content()
    assert body2.splitlines()[0] == (
        "Updated: High severity alert, status inProgress, assigned to adele@contoso.com"
    )
    assert "Status is now inProgress" in body2
    body3 = third.get_body(("plain",)).get_content()
    assert body3.startswith("Resolved: ") and "Status is now resolved" in body3
    assert "<strong>Resolved:</strong>" in third.get_body(("html",)).get_content()
    # The update's time is one response level after the root's: later updates sort later.
    assert _thread_index(third)[22:26] > _thread_index(second)[22:26]


async def test_thread_ids_survive_a_restart_and_a_second_worker(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    env = make_envelope()
    update = update_of(env, status="resolved")
    await _sink(port).send(env, Delivery())
    await _sink(port).send(update, Delivery())  # another process: nothing shared but config
    await _sink(port).send(update, Delivery(attempt=2))  # a retry of the same version
    await _sink(port, name="mail-oncall").send(env, Delivery())  # another sink: its own
    await _sink(port).send(make_envelope("other-alert"), Delivery())
    (_, _, first), (_, _, second), (_, _, retry), (_, _, other_sink), (_, _, other) = box.messages
    _assert_one_thread("mail", env, [first, second])
    assert retry["Message-ID"] == second["Message-ID"]  # readers keep one copy
    assert retry["Thread-Index"] == second["Thread-Index"]
    assert other_sink["Message-ID"] == thread_id("mail-oncall", env, SENDER) != first["Message-ID"]
    assert other["Message-ID"] == thread_id("mail", make_envelope("other-alert"), SENDER)
    assert len({str(m["Message-ID"]) for m in (first, other_sink, other)}) == 3


async def test_a_group_is_one_thread_though_its_title_changes(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    sink = _sink(port)
    a, b = make_envelope("a1"), make_envelope("b2", severity="medium")
    labels = {"tenant": "contoso", "incident_id": "7"}
    first = summarize("g1", 1_000, 2_000, labels, [a], [], first=True)
    later = summarize("g1", 1_000, 62_000, labels, [a, b], ["b2"], first=False)
    done = summarize(
        "g1",
        1_000,
        122_000,
        labels,
        [update_of(a, status="resolved"), update_of(b, status="resolved")],
        ["a1", "b2"],
        first=False,
    )
    assert first.title != later.title  # "2 alerts: ..." after the second joins
    for message in (first, later, done):
        await sink.send(message, Delivery())
    messages = [m for _, _, m in box.messages]
    _assert_one_thread("mail", first, messages)
    assert messages[0]["Subject"] == "[Security alerts] Incident 7 (contoso)"
    assert messages[2].get_body(("plain",)).get_content().startswith("Resolved: ")


async def test_route_recipients(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    sink = _sink(port)
    route = Delivery(params=(("to", "oncall@contoso.com; b@contoso.com"),))
    await sink.send(make_envelope(), route)
    ((_, rcpts, msg),) = box.messages
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


async def test_graph_sendmail_threads_as_mime(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    """Graph's JSON message takes only x- custom headers, so threads go as MIME: the simulator
    records what Graph would store (internetMessageId, every header) and the MIME itself."""
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    settings = sim_settings(make_settings, sim, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    sink = EmailSink(
        config(
            {
                "type": "email",
                "name": "mail",
                "transport": "graph",
                "tenant": "t0",
                "sender": SENDER,
                "to": ["soc@contoso.com"],
            }
        ),
        metrics=SinkMetrics(),
        mailer=GraphMail(graph, {"t0": tid}),
    )
    env = make_envelope()
    versions = [
        env,
        update_of(env, status="inProgress", assigned_to="adele@contoso.com"),
        replace(update_of(env, status="resolved"), updated_at="2026-03-01T12:00:00Z"),
    ]
    try:
        results = [await sink.send(v, Delivery()) for v in versions]
        with pytest.raises(GraphError) as bad:  # what Graph answers to a body that is not base64
            await graph.request(
                tid,
                "POST",
                f"users/{SENDER}/sendMail",
                content=b"not*base64",
                content_type="text/plain",
            )
    finally:
        await graph.aclose()
        await redis.aclose()
    assert bad.value.status == 400 and bad.value.code == "ErrorMimeContentInvalidBase64String"
    assert all("Graph sendMail (MIME)" in r.detail for r in results)
    mails = await asyncio.to_thread(sim.control.mails, tid)
    assert len(mails) == 3
    messages = []
    for mail in mails:
        assert mail["userId"] == SENDER and mail["saveToSentItems"] is True
        parsed = email.message_from_string(mail["mime"], policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
        recorded = mail["message"]
        assert recorded["internetMessageId"] == parsed["Message-ID"]
        assert recorded["toRecipients"] == [{"emailAddress": {"address": "soc@contoso.com"}}]
        assert recorded["body"]["contentType"] == "HTML"
        headers = {h["name"]: h["value"] for h in recorded["internetMessageHeaders"]}
        assert headers["X-Graph-Alert-Id"] == env.id
    _assert_one_thread("mail", env, messages)
    roots = {m["message"]["internetMessageId"] for m in mails}
    assert thread_id("mail", env, SENDER) in roots and len(roots) == 3
    assert "Resolved:" in mails[2]["message"]["body"]["content"]
