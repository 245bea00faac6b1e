"""Outlook .msg mails to PDF: the mail's headers, attachment list, body and nested mails.

:class:`Converter` holds a warm reader and a warm renderer; ``Converter().convert(msg, pdf)``
returns a :class:`ConvertResult` — the PDF's size and sha256, or the reason there is no PDF
(the .msg is never modified, and no partial PDF is left). Modules, in the order a mail goes:
:mod:`~coupad.msg.reader` (parsing in a killable child), :mod:`~coupad.msg.message` (the
neutral structure), :mod:`~coupad.msg.sanitize` and :mod:`~coupad.msg.document` (the safe
HTML), :mod:`~coupad.msg.renderer` and :mod:`~coupad.msg.pipe` (the locked-down Chromium).

The parser, extract-msg, is GPL-3.0 and so an optional extra: ``pip install coupad[msg]``.
A default install, without it, makes no PDFs; every mail fails with the reason
"extract-msg is not installed (pip install coupad[msg])".
"""

from coupad.msg.convert import Converter, ConvertResult, convert, pdf_name
from coupad.msg.message import AttachmentEntry, InlineImage, Message
from coupad.msg.reader import NOT_INSTALLED, Limits, Reader, Unconvertible, installed
from coupad.msg.renderer import Renderer

__all__ = [
    "NOT_INSTALLED", "AttachmentEntry", "ConvertResult", "Converter", "InlineImage", "Limits",
    "Message", "Reader", "Renderer", "Unconvertible", "convert", "installed", "pdf_name",
]
