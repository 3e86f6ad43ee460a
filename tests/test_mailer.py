"""E-mail: templates in both languages, and real delivery to an SMTP server started by the test."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from metering.mailer import Mailer, MailError, format_number, render_email
from metering.system_settings import EmailSettings


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(e.original_content or b"", policy=policy.default) for e in self.envelopes]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accept_demo_login(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"right"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=_accept_demo_login, auth_require_tls=False
    )
    controller.start()
    yield inbox, port
    controller.stop()


def _settings(port: int, **changes: Any) -> EmailSettings:
    base = EmailSettings(smtp_host="127.0.0.1", smtp_port=port, use_tls=False, from_email="noreply@solaris.test")
    return dataclasses.replace(base, **changes)


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


THRESHOLD: dict[str, Any] = {
    "percent": 80,
    "used": 80_000,
    "total_limit": 100_000,
    "reset_date": dt.date(2025, 9, 1),
}


@pytest.mark.parametrize(
    ("lang", "subject", "phrase"),
    [
        ("pt-BR", "Você já usou 80% do seu limite mensal de tokens", "80.000 de 100.000 tokens"),
        ("en", "You have used 80% of your monthly token limit", "80,000 of 100,000 tokens"),
    ],
)
async def test_threshold_email_arrives_in_the_users_language(
    smtp_server: tuple[Inbox, int], lang: str, subject: str, phrase: str
) -> None:
    inbox, port = smtp_server
    rendered = render_email("threshold", lang, user_name="Ana", alert_type="usage_80", **THRESHOLD)
    await Mailer().send("ana@example.com", *rendered, settings=_settings(port), password="")
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["ana@example.com"]
    [message] = inbox.messages
    assert message["Subject"] == subject
    assert message["To"] == "ana@example.com"
    assert message["From"] == "IA SOLARIS <noreply@solaris.test>"
    assert phrase in _body(message, "plain")
    html = _body(message, "html")
    assert "Ana" in html and phrase.split()[0] in html and phrase.split()[2] in html


@pytest.mark.parametrize(
    ("lang", "alert_type", "subject", "phrase"),
    [
        ("pt-BR", "usage_95", "Atenção: você já usou 95% do seu limite mensal de tokens", "01/09/2025"),
        ("en", "usage_95", "Warning: you have used 95% of your monthly token limit", "September 1, 2025"),
        ("pt-BR", "blocked", "Seu limite mensal de tokens foi atingido", "ficam bloqueadas"),
        ("en", "blocked", "You have reached your monthly token limit", "are blocked until"),
    ],
)
def test_threshold_email_says_what_happened(lang: str, alert_type: str, subject: str, phrase: str) -> None:
    context = {**THRESHOLD, "percent": 95 if alert_type == "usage_95" else 100}
    got_subject, text, html = render_email("threshold", lang, user_name="Ana", alert_type=alert_type, **context)
    assert got_subject == subject
    assert phrase in text and phrase in html


@pytest.mark.parametrize(
    ("lang", "subject"), [("pt-BR", "E-mail de teste do IA SOLARIS"), ("en", "IA SOLARIS test e-mail")]
)
async def test_test_email_is_delivered(smtp_server: tuple[Inbox, int], lang: str, subject: str) -> None:
    inbox, port = smtp_server
    rendered = render_email("test", lang, requested_by="admin@example.com", smtp_host="127.0.0.1", smtp_port=port)
    await Mailer().send("admin@example.com", *rendered, settings=_settings(port), password="")
    [message] = inbox.messages
    assert message["Subject"] == subject
    assert "admin@example.com" in _body(message, "plain")


def test_html_escapes_the_users_name_and_text_keeps_it() -> None:
    subject, text, html = render_email(
        "threshold", "en", user_name="<script>alert(1)</script>", alert_type="usage_80", **THRESHOLD
    )
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Hello, <script>alert(1)</script>!" in text
    assert "<script>" not in subject


def test_unknown_language_falls_back_to_portuguese() -> None:
    subject, _, _ = render_email("threshold", "fr", user_name="", alert_type="blocked", **THRESHOLD)
    assert subject == "Seu limite mensal de tokens foi atingido"


def test_numbers_are_written_the_way_each_language_writes_them() -> None:
    assert format_number(1234567, "pt-BR") == "1.234.567"
    assert format_number(1234567, "en") == "1,234,567"
    assert format_number(95.5, "pt-BR") == "95,5"


async def test_connection_refused_raises_mail_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(MailError, match=f"cannot connect to SMTP server 127.0.0.1:{port}"):
        await Mailer().send("a@example.com", "s", "t", None, settings=_settings(port), password="")


async def test_missing_smtp_host_raises_mail_error() -> None:
    with pytest.raises(MailError, match="not configured"):
        await Mailer().send("a@example.com", "s", "t", None, settings=EmailSettings(), password="")


async def test_tls_required_but_not_offered_fails_instead_of_sending_in_clear(
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    with pytest.raises(MailError, match="STARTTLS"):
        settings = _settings(port, use_tls=True)
        await Mailer().send("a@example.com", "s", "t", None, settings=settings, password="")
    assert inbox.envelopes == []


async def test_logs_in_when_a_user_is_set(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    settings = _settings(port, smtp_user="mailer")
    with pytest.raises(MailError, match="refused the login of 'mailer'"):
        await Mailer().send("a@example.com", "s", "t", None, settings=settings, password="wrong")
    await Mailer().send("a@example.com", "s", "t", None, settings=settings, password="right")
    assert len(inbox.envelopes) == 1
