"""E-mail: rendering from Jinja templates in each language, and sending over SMTP (aiosmtplib).

Templates live in `templates/email/` as `<name>.<lang>.txt` and `<name>.<lang>.html`. The first line
of the text template is the subject, followed by a blank line and the plain-text body. HTML is
autoescaped. Languages are 'pt-BR' (the default) and 'en'.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import jinja2

from metering.system_settings import EmailSettings

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "email"
LANGUAGES = ("pt-BR", "en")
DEFAULT_LANGUAGE = "pt-BR"
IMPLICIT_TLS_PORT = 465

_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


class MailError(Exception):
    """An e-mail could not be sent; the message says where and why."""


def pick_language(lang: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    if lang in LANGUAGES:
        return str(lang)
    return default if default in LANGUAGES else DEFAULT_LANGUAGE


def format_number(value: float, lang: str) -> str:
    """1234567 -> '1.234.567' (pt-BR) or '1,234,567' (en); decimals keep one digit."""
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    if pick_language(lang) == "pt-BR":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def format_date(value: dt.date, lang: str) -> str:
    """A calendar date: '01/09/2025' (pt-BR) or 'September 1, 2025' (en)."""
    if pick_language(lang) == "pt-BR":
        return value.strftime("%d/%m/%Y")
    return f"{_EN_MONTHS[value.month - 1]} {value.day}, {value.year}"


@functools.lru_cache(maxsize=4)
def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = format_number
    env.filters["date"] = format_date
    return env


def render_email(name: str, lang: str, *, folder: Path = TEMPLATES_DIR, **ctx: Any) -> tuple[str, str, str]:
    """Render one e-mail; returns (subject, text, html). Templates get `lang` in their context."""
    lang = pick_language(lang)
    env = _environment(folder)
    context = {**ctx, "lang": lang}
    rendered = env.get_template(f"{name}.{lang}.txt").render(context)
    first_line, _, body = rendered.lstrip().partition("\n")
    subject = " ".join(first_line.split())  # one header line, whatever the data held
    html = env.get_template(f"{name}.{lang}.html").render(context)
    return subject, body.strip() + "\n", html


def build_message(to: str, subject: str, text: str, html: str | None, settings: EmailSettings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((settings.from_name, settings.from_email))
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    domain = settings.from_email.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


class Mailer:
    """Sends one message per call over a fresh SMTP connection, with the settings given."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout

    async def send(
        self,
        to: str,
        subject: str,
        text: str,
        html: str | None,
        *,
        settings: EmailSettings,
        password: str,
    ) -> None:
        """Port 465 uses implicit TLS; otherwise `useTls` requires STARTTLS and its absence means a
        plain connection. Logs in only when `smtpUser` is set. Raises MailError on any failure."""
        if not settings.smtp_host:
            raise MailError("SMTP is not configured (no SMTP host in the e-mail settings)")
        server = f"{settings.smtp_host}:{settings.smtp_port}"
        try:
            message = build_message(to, subject, text, html, settings)
        except (ValueError, TypeError) as exc:
            raise MailError(f"cannot build the e-mail to {to!r}: {exc}") from exc
        implicit_tls = settings.smtp_port == IMPLICIT_TLS_PORT
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_user or None,
                password=password if settings.smtp_user else None,
                use_tls=implicit_tls,
                start_tls=settings.use_tls and not implicit_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            user = settings.smtp_user
            raise MailError(f"SMTP server {server} refused the login of {user!r}: {exc}") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise MailError(f"SMTP server {server} refused the recipient {to!r}: {exc}") from exc
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            raise MailError(f"SMTP server {server} did not answer within {self._timeout:g} s") from exc
        except aiosmtplib.SMTPConnectError as exc:
            raise MailError(f"cannot connect to SMTP server {server}: {exc}") from exc
        except aiosmtplib.SMTPException as exc:
            raise MailError(f"sending through SMTP server {server} failed: {exc}") from exc
        except OSError as exc:
            raise MailError(f"cannot connect to SMTP server {server}: {exc.strerror or exc}") from exc
        log.info("e-mail %r sent to %s via %s", subject, to, server)
