"""A mail as the PDF shows it: headers, body, attachment list, inline images, nested mails.

Plain data with no tie to the parser, so it crosses the reader's process boundary as JSON
(:meth:`Message.to_json`, :meth:`Message.from_json`) and is built by hand in tests.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AttachmentEntry:
    """One attachment as listed in the PDF: its name as the mail gives it, and its size."""

    name: str
    size: int


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML body refers to as ``cid:<content_id>``."""

    content_id: str
    mimetype: str
    data: bytes


@dataclass(frozen=True)
class Message:
    """One mail; ``html`` or ``text`` is its body (``html`` wins), either may be None."""

    subject: str = ""
    sender: str = ""
    to: str = ""
    cc: str = ""
    date: datetime | None = None
    html: str | None = None
    text: str | None = None
    body_source: str = "none"  # "html", "rtf" (HTML recovered from RTF), "plain" or "none"
    attachments: tuple[AttachmentEntry, ...] = ()
    images: tuple[InlineImage, ...] = ()
    nested: tuple[tuple[str, Message], ...] = ()  # (attachment name, the embedded mail)
    notes: tuple[str, ...] = field(default=())  # what the reader left out, said in the PDF

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (images as base64)."""
        return {
            "subject": self.subject,
            "sender": self.sender,
            "to": self.to,
            "cc": self.cc,
            "date": self.date.isoformat() if self.date else None,
            "html": self.html,
            "text": self.text,
            "body_source": self.body_source,
            "attachments": [[a.name, a.size] for a in self.attachments],
            "images": [
                [i.content_id, i.mimetype, base64.b64encode(i.data).decode("ascii")]
                for i in self.images
            ],
            "nested": [[name, message.to_json()] for name, message in self.nested],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        """The inverse of :meth:`to_json`."""
        return cls(
            subject=str(data["subject"]),
            sender=str(data["sender"]),
            to=str(data["to"]),
            cc=str(data["cc"]),
            date=datetime.fromisoformat(data["date"]) if data["date"] else None,
            html=data["html"],
            text=data["text"],
            body_source=str(data["body_source"]),
            attachments=tuple(AttachmentEntry(str(n), int(s)) for n, s in data["attachments"]),
            images=tuple(
                InlineImage(str(c), str(m), base64.b64decode(d)) for c, m, d in data["images"]
            ),
            nested=tuple((str(n), cls.from_json(m)) for n, m in data["nested"]),
            notes=tuple(str(n) for n in data["notes"]),
        )
