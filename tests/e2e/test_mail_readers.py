"""The mail readers of tests/e2e/mail.py: the containers' SMTP debugging server log gives back the message it
printed, its plain and HTML parts apart, even where the container log joined two printed lines."""

from __future__ import annotations

from email.message import EmailMessage

from .mail import BEGIN, END, debugging_server_log


def _printed(message: EmailMessage) -> list[str]:
    """What Python's smtpd DebuggingServer prints for ``message``: each line as the repr of its bytes, an
    X-Peer line after the headers."""
    lines = message.as_bytes().split(b"\n")
    blank = lines.index(b"")
    return [*map(repr, lines[:blank]), "X-Peer: 10.89.0.5", *map(repr, lines[blank:])]


async def test_the_debugging_server_log_gives_back_both_parts_even_with_lines_joined() -> None:
    message = EmailMessage()
    message["To"] = "Ada <ada@example.com>"
    message["Subject"] = "Payment receipt for order 'A1' \"paid\""
    message.set_content("Hi Ada,\n\nWe received your payment. \\o/\n")
    message.add_alternative("<p>Hi Ada,</p><p>We received your payment.</p>", subtype="html")
    printed = _printed(message)
    joined: list[str] = []  # each MIME boundary line and the next on one line, as a container log may
    for line in printed:
        if joined and joined[-1].startswith("b'--"):
            joined[-1] += line
        else:
            joined.append(line)
    assert len(joined) < len(printed)
    for lines in (printed, joined):
        log = "\n".join(["smtpd started", BEGIN, *lines, END, "other output"])
        [mail] = await debugging_server_log(lambda log=log: log)("ada@example.com")
        assert mail.subject == "Payment receipt for order 'A1' \"paid\""
        assert mail.text.strip() == "Hi Ada,\n\nWe received your payment. \\o/"
        assert mail.html.strip() == "<p>Hi Ada,</p><p>We received your payment.</p>"
    assert await debugging_server_log(lambda: log)("bob@example.com") == []
