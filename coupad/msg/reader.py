"""Reading a .msg file in a child process that can be killed: time, memory and crashes bounded.

The parser (extract-msg, an optional extra: ``pip install coupad[msg]``) runs in a warm child
process, ``python -m coupad.msg.reader``, in a process group of its own and under an
address-space limit. The parent sends one JSON request line per mail and reads back one
length-prefixed JSON answer — never a pickle: what a hostile mail might make of the child
must not become code in the parent. An answer that is late kills the child; the next mail
starts a new one. Damaged files raise unrelated exception types inside the parser (an
``OSError`` for a truncated container, its own errors for a file that is not OLE, a
``TypeError`` for malformed RTF); the child turns each into a sentence.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coupad.errors import CoupadError
from coupad.msg.message import AttachmentEntry, InlineImage, Message

log = logging.getLogger("coupad.msg")

NOT_INSTALLED = "extract-msg is not installed (pip install coupad[msg])"


class Unconvertible(CoupadError):
    """A mail that cannot become a PDF; the message is the reason, in plain words."""


@dataclass(frozen=True)
class Limits:
    """What the reader accepts: a bigger body is refused rather than rendered for minutes."""

    max_body_bytes: int = 2 << 20  # of the HTML or plain body, after decoding
    max_image_bytes: int = 16 << 20  # of all inline images together
    max_nested: int = 20  # embedded mails rendered (each counts, at any depth)
    max_depth: int = 4  # embedded mails inside embedded mails


def installed() -> bool:
    """Whether the parser is importable here (and so in the child, same interpreter)."""
    return importlib.util.find_spec("extract_msg") is not None


class Reader:
    """The parent's side: one warm child, restarted after a time-out or a crash."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        memory_limit: int = 2 << 30,
        limits: Limits | None = None,
    ) -> None:
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.limits = limits or Limits()
        self._child: subprocess.Popen[bytes] | None = None

    def read(self, path: Path) -> Message:
        """The mail in ``path``; Unconvertible with the reason when it cannot be read."""
        if not installed():
            raise Unconvertible(NOT_INSTALLED)
        if self._child is not None and self._child.poll() is not None:
            self._stop()  # it died between mails: this mail is not to blame
        child = self._child or self._start()
        request = {"path": str(path), "limits": self.limits.__dict__}
        try:
            assert child.stdin is not None
            child.stdin.write(json.dumps(request).encode() + b"\n")
            child.stdin.flush()
            answer = self._answer(child, time.monotonic() + self.timeout)
        except TimeoutError:
            self._stop()
            raise Unconvertible(f"reading the mail took longer than {self.timeout:g} s") from None
        except (OSError, EOFError, ValueError):
            code = self._stop()
            raise Unconvertible(f"the mail reader stopped ({_exit_text(code)})") from None
        if not answer.get("ok"):
            raise Unconvertible(str(answer.get("reason") or "the mail could not be read"))
        return Message.from_json(answer["message"])

    def close(self) -> None:
        """Stop the child, if one runs."""
        self._stop()

    def _start(self) -> subprocess.Popen[bytes]:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "coupad.msg.reader", str(self.memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed whole
        )
        return self._child

    def _stop(self) -> int | None:
        child, self._child = self._child, None
        if child is None:
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        code = child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return code

    @staticmethod
    def _answer(child: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
        assert child.stdout is not None
        fd = child.stdout.fileno()
        buffer = b""
        size: int | None = None
        while size is None or len(buffer) < 4 + size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError
            buffer += chunk
            if size is None and len(buffer) >= 4:
                (size,) = struct.unpack(">I", buffer[:4])
        answer = json.loads(buffer[4 : 4 + size])
        if not isinstance(answer, dict):
            raise ValueError("the answer is not an object")
        return answer


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


# ---- the child ---------------------------------------------------------------------------


def serve(memory_limit: int) -> None:
    """The child's loop: one request line in, one answer frame out, until stdin closes."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    logging.getLogger("extract_msg").setLevel(logging.CRITICAL)  # its complaints are ours now
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            message = parse(Path(request["path"]), Limits(**request["limits"]))
            answer: dict[str, Any] = {"ok": True, "message": message.to_json()}
        except Unconvertible as exc:
            answer = {"ok": False, "reason": str(exc)}
        except MemoryError:
            answer = {"ok": False, "reason": "reading the mail needed more memory than allowed"}
        data = json.dumps(answer).encode()
        sys.stdout.buffer.write(struct.pack(">I", len(data)) + data)
        sys.stdout.buffer.flush()


def parse(path: Path, limits: Limits) -> Message:
    """Parse ``path`` with extract-msg (in this process); Unconvertible when it cannot."""
    import extract_msg
    from extract_msg.enums import ErrorBehavior
    from extract_msg.exceptions import InvalidFileFormatError

    behaviour = (
        ErrorBehavior.RTFDE | ErrorBehavior.ATTACH_SUPPRESS_ALL | ErrorBehavior.STANDARDS_VIOLATION
    )
    _check_body_sizes(path, limits)
    try:
        msg = extract_msg.openMsg(str(path), errorBehavior=behaviour)
    except InvalidFileFormatError:
        if _starts_as_ole(path):
            raise Unconvertible("the .msg file is damaged or truncated") from None
        raise Unconvertible("not an Outlook .msg file (no OLE2 container)") from None
    except OSError as exc:  # olefile's errors: truncated, bit-flipped, unreadable
        raise Unconvertible(f"the .msg file is damaged or truncated ({_first_line(exc)})") from None
    except Unconvertible:
        raise
    except Exception as exc:
        raise Unconvertible(f"the .msg file cannot be read ({_first_line(exc)})") from None
    try:
        return _Converter(limits).message(msg, depth=0)
    except (Unconvertible, MemoryError):
        raise
    except Exception as exc:  # a stream that fails only when read: a damaged container
        raise Unconvertible(f"the .msg file is damaged ({_first_line(exc)})") from None
    finally:
        with contextlib.suppress(Exception):
            msg.close()


class _Converter:
    """extract-msg's objects to a :class:`Message`, within :class:`Limits`."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.nested = 0
        self.image_bytes = 0

    def message(self, msg: Any, depth: int) -> Message:
        html, text, source = self.body(msg)
        attachments: list[AttachmentEntry] = []
        images: list[InlineImage] = []
        nested: list[tuple[str, Message]] = []
        notes: list[str] = []
        for attachment in getattr(msg, "attachments", None) or ():
            name = _attachment_name(attachment)
            data = getattr(attachment, "data", None)
            if isinstance(data, bytes):
                attachments.append(AttachmentEntry(name, len(data)))
                image = self.image(attachment, data)
                if image is not None:
                    images.append(image)
            elif data is not None and hasattr(data, "subject"):
                attachments.append(AttachmentEntry(name, 0))
                if depth + 1 > self.limits.max_depth or self.nested >= self.limits.max_nested:
                    notes.append(f"the attached mail {name} is not shown (too many or too deep)")
                    continue
                self.nested += 1
                nested.append((name, self.message(data, depth + 1)))
            else:
                attachments.append(AttachmentEntry(name, 0))
        date = getattr(msg, "date", None)
        return Message(
            subject=_text(getattr(msg, "subject", None)),
            sender=_text(getattr(msg, "sender", None)),
            to=_text(getattr(msg, "to", None)),
            cc=_text(getattr(msg, "cc", None)),
            date=date if hasattr(date, "isoformat") else None,
            html=html,
            text=text,
            body_source=source,
            attachments=tuple(attachments),
            images=tuple(images),
            nested=tuple(nested),
            notes=tuple(notes),
        )

    def body(self, msg: Any) -> tuple[str | None, str | None, str]:
        """The HTML stream, else HTML recovered from RTF, else the plain body."""
        from extract_msg.enums import DeencapType

        limit = self.limits.max_body_bytes
        raw = msg.getStream("__substg1.0_10130102")
        if raw:
            self.check_size(len(raw), "HTML body")
            return _decode_html(raw), None, "html"
        text = msg.body if hasattr(msg, "body") else None
        rtf = getattr(msg, "rtfBody", None)
        if rtf:
            self.check_size(len(rtf), "RTF body", 4 * limit)
            recovered = msg.deencapsulateBody(rtf, DeencapType.HTML)
            if recovered:
                html = recovered if isinstance(recovered, str) else _decode_html(recovered)
                self.check_size(len(html), "HTML body")
                return html, None, "rtf"
            if not text:
                text = msg.deencapsulateBody(rtf, DeencapType.PLAIN)
        if text:
            text = str(text)
            self.check_size(len(text.encode()), "plain body")
            return None, text, "plain"
        return None, None, "none"

    def check_size(self, size: int, what: str, limit: int | None = None) -> None:
        _size_check(size, what, self.limits.max_body_bytes if limit is None else limit)

    def image(self, attachment: Any, data: bytes) -> InlineImage | None:
        cid = _text(getattr(attachment, "cid", None)).strip().strip("<>")
        mimetype = _text(getattr(attachment, "mimetype", None)).lower()
        if not cid or not mimetype.startswith("image/"):
            return None
        if self.image_bytes + len(data) > self.limits.max_image_bytes:
            return None
        self.image_bytes += len(data)
        return InlineImage(cid, mimetype, data)


_BODY_STREAMS = {
    "__substg1.0_10130102": "HTML body",
    "__substg1.0_1000001F": "plain body",
    "__substg1.0_1000001E": "plain body",
}
_RTF_STREAM = "__substg1.0_10090102"


def _check_body_sizes(path: Path, limits: Limits) -> None:
    """Refuse a mail whose body (its own or a nested mail's) is too large, before parsing.

    extract-msg decompresses the RTF body while opening the file, slowly, so the sizes are
    read from the container's directory and the RTF's header first. A container olefile
    cannot open is left to the parser, whose errors say what is wrong.
    """
    import olefile

    try:
        ole = olefile.OleFileIO(str(path))
    except Exception:
        return
    try:
        for entry in ole.listdir(streams=True, storages=False):
            name = entry[-1]
            if name in _BODY_STREAMS:
                size = ole.get_size(entry)
                if name.endswith("001F"):
                    size //= 2  # UTF-16: about one byte of UTF-8 per character for most text
                _size_check(size, _BODY_STREAMS[name], limits.max_body_bytes)
            elif name == _RTF_STREAM:
                header = ole.openstream(entry).read(8)
                if len(header) == 8:
                    (raw_size,) = struct.unpack_from("<I", header, 4)
                    # RTF spends a few bytes of markup per character of the HTML it carries.
                    _size_check(raw_size, "RTF body", 4 * limits.max_body_bytes)
    except Unconvertible:
        raise
    except Exception:
        return
    finally:
        ole.close()


def _size_check(size: int, what: str, limit: int) -> None:
    if size > limit:
        raise Unconvertible(
            f"the {what} is too large to render ({_mb(size)}; the limit is {_mb(limit)})"
        )


def _starts_as_ole(path: Path) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as stream:
        return stream.read(8) == bytes.fromhex("D0CF11E0A1B11AE1")
    return False


def _attachment_name(attachment: Any) -> str:
    for attribute in ("longFilename", "shortFilename", "displayName", "name"):
        value = getattr(attachment, attribute, None)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "(unnamed attachment)"


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _decode_html(raw: bytes) -> str:
    """HTML bytes as text: UTF-8 if they are, else the charset the document declares."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    match = _META_CHARSET.search(raw[:4096])
    if match:
        with contextlib.suppress(LookupError):
            return raw.decode(match.group(1).decode("ascii"), errors="replace")
    return raw.decode("cp1252", errors="replace")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


if __name__ == "__main__":
    serve(int(sys.argv[1]))
