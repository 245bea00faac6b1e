"""One .msg to one PDF: read (bounded child), build the safe document, print, write atomically."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from coupad.durable import atomic_write
from coupad.errors import BrowserError
from coupad.msg.document import build_document
from coupad.msg.reader import Reader, Unconvertible
from coupad.msg.renderer import Renderer

log = logging.getLogger("coupad.msg")


@dataclass(frozen=True)
class ConvertResult:
    """What became of one mail: a PDF (its size and sha256) or the reason there is none."""

    msg: Path
    pdf: Path
    ok: bool
    reason: str | None = None
    size: int = 0
    sha256: str | None = None
    seconds: float = 0.0
    transient: bool = False  # the mail is not to blame (the PDF could not be written): try again


class Converter:
    """A warm reader and a warm renderer, for many mails; close() stops both."""

    def __init__(self, reader: Reader | None = None, renderer: Renderer | None = None) -> None:
        self.reader = reader or Reader()
        self.renderer = renderer or Renderer()

    def __enter__(self) -> Converter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader's child and the browser."""
        try:
            self.reader.close()
        finally:
            self.renderer.close()

    def convert(self, msg_path: Path, pdf_path: Path) -> ConvertResult:
        """Write ``pdf_path`` from ``msg_path`` (never modified), or give the reason why not."""
        started = time.monotonic()

        def failed(reason: str, transient: bool = False) -> ConvertResult:
            log.info("no PDF for %s: %s", msg_path.name, reason)
            return ConvertResult(msg_path, pdf_path, False, reason,
                                 seconds=time.monotonic() - started, transient=transient)

        if pdf_path.resolve() == msg_path.resolve():
            return failed("the PDF would replace the mail itself")
        if not msg_path.is_file():
            return failed("no such file")
        try:
            message = self.reader.read(msg_path)
            pdf = self.renderer.render(build_document(message))
        except Unconvertible as exc:
            return failed(str(exc))
        except BrowserError as exc:
            return failed(f"the PDF renderer is not available ({exc})")
        if not pdf.startswith(b"%PDF-"):
            return failed("the renderer produced no PDF")
        try:
            atomic_write(pdf_path, lambda stream: stream.write(pdf))
        except OSError as exc:  # the temporary file is gone; the PDF was not replaced
            return failed(f"cannot write the PDF ({exc.strerror or exc})", transient=True)
        return ConvertResult(
            msg_path, pdf_path, True, None, len(pdf), hashlib.sha256(pdf).hexdigest(),
            time.monotonic() - started,
        )


def pdf_name(msg_path: Path) -> str:
    """The PDF's name beside the mail: ``<name>.pdf`` (``a.msg`` → ``a.msg.pdf``)."""
    return msg_path.name + ".pdf"


def convert(msg_path: Path, pdf_path: Path, converter: Converter | None = None) -> ConvertResult:
    """Convert one mail with ``converter`` (warm, reused), or with a new one closed after."""
    if converter is not None:
        return converter.convert(msg_path, pdf_path)
    with Converter() as fresh:
        return fresh.convert(msg_path, pdf_path)
