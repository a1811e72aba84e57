"""Where a running mart's mail lands, read the same way in every mode (docs/looking-around.md):

- embedded: ``.eml`` files under ``<data dir>/mail`` (the ``file`` e-mail backend);
- distributed: Mailpit, through its HTTP API;
- containers: the SMTP server of compose.local.yaml (Python's debugging server), which prints each message
  it receives to its container log.

Each gives the messages sent to one address, parsed with the standard library's ``email`` package.
"""

from __future__ import annotations

import ast
import asyncio
import email
import email.policy
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str


Mailbox = Callable[[str], Awaitable[list[Mail]]]


def _mail(message: EmailMessage) -> Mail:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return Mail(
        to=str(message["To"] or ""),
        subject=str(message["Subject"] or ""),
        text=text.get_content() if text is not None else "",
        html=html.get_content() if html is not None else "",
    )


def _parse(raw: bytes | str) -> EmailMessage:
    if isinstance(raw, str):
        return email.message_from_string(raw, policy=email.policy.default)  # type: ignore[return-value]
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def eml_files(directory: Path) -> Mailbox:
    def read(to: str) -> list[Mail]:
        mails = [_mail(_parse(p.read_bytes())) for p in sorted(directory.glob("*.eml"))]
        return [m for m in mails if to in m.to]

    return lambda to: asyncio.to_thread(read, to)


def mailpit(api: str) -> Mailbox:
    async def read(to: str) -> list[Mail]:
        async with httpx.AsyncClient(timeout=30) as client:
            found = await client.get(f"{api}/api/v1/search", params={"query": f"to:{to}"})
            found.raise_for_status()
            out = []
            for summary in found.json()["messages"]:
                raw = await client.get(f"{api}/api/v1/message/{summary['ID']}/raw")
                raw.raise_for_status()
                out.append(_mail(_parse(raw.content)))
        return [m for m in out if to in m.to]

    return read


BEGIN, END = "---------- MESSAGE FOLLOWS ----------", "------------ END MESSAGE ------------"
BYTES_REPR = re.compile(r"b'(?:[^'\\\n]|\\.)*'" + r'|b"(?:[^"\\\n]|\\.)*"')  # a Python bytes literal


def debugging_server_log(log: Callable[[], str]) -> Mailbox:
    """``log()``: the SMTP debugging server's output so far (``smtpd.DebuggingServer`` prints every
    message between BEGIN and END, a header ``X-Peer`` added)."""

    def read(to: str) -> list[Mail]:
        out = []
        for chunk in log().split(BEGIN)[1:]:
            # Each line of the data is printed as the repr of its bytes (b'Subject: ...'); other lines are the
            # server's. The reprs are read as tokens, not lines: the container log may join two printed lines
            # (the server writes a repr and its newline separately), and a line lost that way would be a
            # MIME boundary lost.
            data = b"\n".join(ast.literal_eval(token) for token in BYTES_REPR.findall(chunk.split(END, 1)[0]))
            out.append(_mail(_parse(data)))
        return [m for m in out if to in m.to]

    return lambda to: asyncio.to_thread(read, to)
