"""Outlook .msg files made from scratch, for the simulator and the tests: no one's mail copied.

A .msg is an OLE2 compound file: a property stream (``__properties_version1.0``: a header,
then one 16-byte entry per property), one ``__substg1.0_<TAG>`` stream per variable-length
value, a storage per recipient and per attachment, and the named-property map. An embedded
message is the same layout inside its attachment's ``__substg1.0_3701000D`` storage, with a
shorter header. :func:`write_msg` builds one with extract-msg's own OLE writer, so this needs
the optional extra ``coupad[msg]`` (:func:`available`); :func:`attachment_mail` is the mail
the simulator serves for an attachment named ``*.msg``, the same bytes for the same id.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import random
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

STRING, BINARY, INT32, TIME, OBJECT = 0x001F, 0x0102, 0x0003, 0x0040, 0x000D
MSG_CLSID = bytes.fromhex("0B0D020000000000C000000000000046")  # 00020D0B-…-000000000046
_READ_WRITE = 0x6

# A 1x1 red PNG, for inline images.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d7"
    "63f8cfc000000301010018dd8db00000000049454e44ae426082"
)


@dataclass
class Attachment:
    """A file attached by value, or (with ``message``) an embedded message."""

    name: str
    data: bytes = b""
    mimetype: str = "application/octet-stream"
    content_id: str | None = None
    message: Mail | None = None


@dataclass
class Mail:
    """What a fixture mail says; any body left None is absent from the file."""

    subject: str = "Fixture mail"
    sender_name: str = "Ada Sender"
    sender_address: str = "ada@example.com"
    to: list[tuple[str, str]] = field(default_factory=lambda: [("Bob Buyer", "bob@example.com")])
    cc: list[tuple[str, str]] = field(default_factory=list)
    date: datetime = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    plain: str | None = None
    html: str | None = None
    rtf: bytes | None = None  # uncompressed RTF; stored compressed, as Outlook does
    rtf_compressed: bytes | None = None  # already compressed (see big_compressed_rtf)
    attachments: list[Attachment] = field(default_factory=list)


def available() -> bool:
    """Whether mails can be written here: the OLE writer comes with extract-msg."""
    return importlib.util.find_spec("extract_msg") is not None


def write_msg(path: Path, mail: Mail) -> Path:
    """Write ``mail`` to ``path`` as an Outlook .msg file; return the path."""
    with path.open("wb") as stream:
        _write(stream, mail)
    return path


def to_bytes(mail: Mail) -> bytes:
    """``mail`` as the bytes of an Outlook .msg file."""
    stream = io.BytesIO()
    _write(stream, mail)
    return stream.getvalue()


def _write(stream: BinaryIO, mail: Mail) -> None:
    from extract_msg.ole_writer import OleWriter

    writer = OleWriter(rootClsid=MSG_CLSID)
    _add_message(writer, [], mail, top=True)
    for name in ("__substg1.0_00020102", "__substg1.0_00030102", "__substg1.0_00040102"):
        writer.addEntry(["__nameid_version1.0", name], b"")
    writer.write(stream)


_PEOPLE = (
    ("Anna Keller", "anna.keller@supplier.example"),
    ("Bruno Martín", "bruno.martin@supplier.example"),
    ("Chloé Dubois", "chloe.dubois@buyer.example"),
    ("Daniel Osei", "daniel.osei@buyer.example"),
    ("Emi Tanaka", "emi.tanaka@supplier.example"),
)
_LINES = (
    "Please find the updated quote for the order below; prices are valid for 30 days.",
    "The delivery is confirmed for the week of the 14th, two pallets, dock 3.",
    "Approved by finance. Please go ahead and release the purchase order.",
    "The supplier asks whether partial deliveries are acceptable for this order.",
    "Attached is the signed amendment. Let me know if anything is missing.",
)


@functools.lru_cache(maxsize=256)
def attachment_mail(seed: str, name: str) -> bytes:
    """The Outlook mail the simulator serves as the attachment ``seed`` named ``name``: an
    HTML body with a small table and an inline image, one attached file; deterministic."""
    rng = random.Random(f"coupad-sim:mail:{seed}")
    sender, to, cc = rng.sample(_PEOPLE, 3)
    subject = name[:-4] if name.lower().endswith(".msg") else name
    lines = rng.sample(_LINES, 2)
    rows = "".join(f"<tr><td>{n}</td><td>Item {rng.randint(100, 999)}</td>"
                   f"<td>{rng.randint(1, 40)}</td></tr>" for n in range(1, rng.randint(2, 5)))
    html = (f"<html><body><p>Hello,</p><p>{lines[0]}</p>"
            f"<table border=1><tr><th>Line</th><th>Item</th><th>Qty</th></tr>{rows}</table>"
            f'<p>{lines[1]}</p><p><img src="cid:logo-{seed}"></p><p>Regards,<br>{sender[0]}</p>'
            "</body></html>")
    mail = Mail(
        subject=subject, sender_name=sender[0], sender_address=sender[1], to=[to], cc=[cc],
        date=datetime(2024, 1, 8, 9, 0, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 500_000)),
        html=html, plain=f"Hello,\n\n{lines[0]}\n\n{lines[1]}\n\nRegards,\n{sender[0]}\n",
        attachments=[
            Attachment("logo.png", PNG_1X1, "image/png", f"logo-{seed}"),
            Attachment(f"terms {seed}.txt", f"Terms of order {seed}.\n".encode(), "text/plain"),
        ],
    )
    return to_bytes(mail)


def rtf_from_html(html: str) -> bytes:
    """RTF that encapsulates ``html`` (``\\fromhtml1``), the way Outlook stores HTML mail."""
    body = html.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")
    escaped = "".join(c if ord(c) < 128 else f"\\u{_signed16(ord(c))}?" for c in body)
    return (
        "{\\rtf1\\ansi\\ansicpg1252\\fromhtml1 \\deff0{\\fonttbl{\\f0\\fswiss Arial;}}"
        f"{{\\*\\htmltag64 {escaped}}}}}"
    ).encode("ascii")


def big_compressed_rtf(size: int) -> bytes:
    """Compressed RTF (LZFu) whose text is ``size`` bytes: a prefix, then one 16-byte phrase.

    Built by hand and fast: after the phrase is written once, every token is a reference to
    the 16 bytes before it, so the body costs about 2 bytes per 16 of text (the OLE writer's
    files stay under its size limit) and no compressor runs over the whole body.
    """
    prefix = b"{\\rtf1\\ansi     big mail bodies "  # 32 literals; the last 16 repeat
    assert len(prefix) % 8 == 0
    literals = b"".join(b"\0" + prefix[i : i + 8] for i in range(0, len(prefix), 8))
    write = 207 + len(prefix)  # the dictionary starts after its 207 preset bytes
    cycle = bytearray()
    for group in range(32):  # the offsets repeat every 256 references (4096 / 16)
        cycle.append(0xFF)
        for token in range(8):
            offset = (write + (group * 8 + token) * 16 - 16) & 0xFFF
            cycle += struct.pack(">H", offset << 4 | (16 - 2))
    count = (size - len(prefix)) // (256 * 16)
    payload = literals + bytes(cycle) * count
    raw_size = len(prefix) + count * 256 * 16
    crc = ~zlib.crc32(payload, 0xFFFFFFFF) & 0xFFFFFFFF  # MS-OXRTFCP: CRC-32, no final xor
    return struct.pack("<II4sI", len(payload) + 12, raw_size, b"LZFu", crc) + payload


def _signed16(code: int) -> int:
    return code - 0x10000 if code > 0x7FFF else code


def _filetime(moment: datetime) -> int:
    return int((moment - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000)


class _Props:
    """The property entries of one storage and the streams of its variable-length values."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.streams: dict[str, bytes] = {}

    def string(self, prop: int, value: str) -> None:
        data = value.encode("utf-16-le")
        self._variable(prop, STRING, data, len(data) + 2)

    def binary(self, prop: int, value: bytes) -> None:
        self._variable(prop, BINARY, value, len(value))

    def int32(self, prop: int, value: int) -> None:
        self.entries.append(struct.pack("<IIi4x", prop << 16 | INT32, _READ_WRITE, value))

    def time(self, prop: int, value: datetime) -> None:
        self.entries.append(struct.pack("<IIQ", prop << 16 | TIME, _READ_WRITE, _filetime(value)))

    def embedded(self, prop: int) -> None:
        self.entries.append(struct.pack("<IIII", prop << 16 | OBJECT, _READ_WRITE, 0xFFFFFFFF, 0))

    def _variable(self, prop: int, kind: int, data: bytes, size: int) -> None:
        tag = prop << 16 | kind
        self.entries.append(struct.pack("<IIII", tag, _READ_WRITE, size, 0))
        self.streams[f"__substg1.0_{tag:08X}"] = data

    def write(self, writer: object, base: list[str], header: bytes) -> None:
        add = writer.addEntry  # type: ignore[attr-defined]
        add([*base, "__properties_version1.0"], header + b"".join(self.entries))
        for name, data in self.streams.items():
            add([*base, name], data)


def _add_message(writer: object, base: list[str], mail: Mail, *, top: bool) -> None:
    import compressed_rtf

    props = _Props()
    props.string(0x001A, "IPM.Note")
    props.string(0x0037, mail.subject)
    props.string(0x0C1A, mail.sender_name)
    props.string(0x0C1F, mail.sender_address)
    props.string(0x5D01, mail.sender_address)
    props.string(0x0E04, "; ".join(name for name, _ in mail.to))
    props.string(0x0E03, "; ".join(name for name, _ in mail.cc))
    props.time(0x0039, mail.date)
    props.time(0x0E06, mail.date)
    if mail.plain is not None:
        props.string(0x1000, mail.plain)
    if mail.html is not None:
        props.binary(0x1013, mail.html.encode("utf-8"))
        props.int32(0x3FDE, 65001)  # the HTML body's code page: UTF-8
    if mail.rtf is not None:
        props.binary(0x1009, compressed_rtf.compress(mail.rtf, compressed=True))
    if mail.rtf_compressed is not None:
        props.binary(0x1009, mail.rtf_compressed)
    recipients = [(name, address, 1) for name, address in mail.to]
    recipients += [(name, address, 2) for name, address in mail.cc]
    for index, (name, address, kind) in enumerate(recipients):
        recip = _Props()
        recip.string(0x3001, name)
        recip.string(0x39FE, address)
        recip.string(0x3003, address)
        recip.int32(0x0C15, kind)
        recip.write(writer, [*base, f"__recip_version1.0_#{index:08X}"], bytes(8))
    for index, attachment in enumerate(mail.attachments):
        storage = [*base, f"__attach_version1.0_#{index:08X}"]
        attach = _Props()
        attach.string(0x3707, attachment.name)
        attach.string(0x3001, attachment.name)
        attach.string(0x370E, attachment.mimetype)
        if attachment.content_id is not None:
            attach.string(0x3712, attachment.content_id)
        if attachment.message is not None:
            attach.int32(0x3705, 5)
            attach.embedded(0x3701)
            attach.write(writer, storage, bytes(8))
            _add_message(writer, [*storage, "__substg1.0_3701000D"], attachment.message, top=False)
        else:
            attach.int32(0x3705, 1)
            attach.binary(0x3701, attachment.data)
            attach.write(writer, storage, bytes(8))
    counts = struct.pack(
        "<8xIIII", len(recipients), len(mail.attachments), len(recipients), len(mail.attachments)
    )
    props.write(writer, base, counts + (bytes(8) if top else b""))
