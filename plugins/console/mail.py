"""Sending the console's e-mails (confirmation and password-reset links) over SMTP."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from tokone.plugins.console.settings import SmtpConfig


def send_mail(smtp: SmtpConfig, to: str, subject: str, body: str) -> None:
    """Send one plain-text message (blocking: call it from a worker thread)."""
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
        if smtp.starttls:
            client.starttls()
        if smtp.username:
            client.login(smtp.username, smtp.password)
        client.send_message(message)
