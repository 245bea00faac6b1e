"""What the simulated tenant holds: purchase orders, requisitions, attachments, latency.

Every PO number has a deterministic default scenario derived from its digits, so that any
list of numbers is a valid test input and the same number always means the same thing.
The case is ``int(digits) % 20``:

====  =========================  ==========================================================
 0    ``link_only``              2-3 attachments as ``attachment_file`` links
 1    ``button_only``            2-3 attachments as ``span[role=button]`` (URL only in JS)
 2    ``both_shapes``            3-4 attachments, links and buttons mixed
 3    ``no_attachments``         no attachments, no requisition
 4    ``requisition_only``       no attachments; its requisition has 1-3 files
 5    ``not_found``              "Oops! We couldn't find what you wanted"
 6    ``not_found_variant``      "The page you were looking for doesn't exist" or German
 7    ``access_denied``          "You are not authorized to view this page"
 8    ``access_denied_variant``  "Access denied", German or French
 9    ``awkward_names``          every awkward name (quotes, /, \\, .., CON, control
                                 characters, 300 characters, two files with one name)
10    ``rfc5987_names``          non-ASCII names sent as ``filename*=UTF-8''...``
11    ``inline_pdf``             PDFs served ``inline`` as application/pdf, plus one file
12    ``with_requisition``       attachments, and a requisition that has files too
13    ``banner``                 both shapes under an informational banner
14-19 ``mixed``                  1-4 attachments of random shapes; some with a banner or
                                 a requisition
====  =========================  ==========================================================

Overlays on the last three digits, applied after the case above:

* ``999`` — ``large``: replaces the case with one big link attachment of
  ``(digit before 999 + 1) * 5`` MB (5-50 MB) and one small button attachment.
* ``429`` — the first 2 visits of the PO page answer HTTP 429.
* ``503`` — the first visit of the PO page answers HTTP 503.
* ``777`` — a slow PO: 2 s server time per page and downloads at 256 KB/s.

Other attachments are 1-300 KB, so tests stay fast. An attachment named ``*.msg`` is an
Outlook mail (:func:`coupad.sim.mails.attachment_mail`, a few KB, the same bytes for the
same id) when extract-msg is installed (``coupad[msg]``), random bytes otherwise; the truth
says which (``mail``). A scenario file (see
:mod:`coupad.sim.scenario`) overrides single POs and requisitions, and can give them every
shape Coupa's pages are known to take (:class:`PageStyle`, and per attachment a redirect to the
file-storage origin, a body without Content-Length, a slow body or a permanent error).
Default POs keep the classic page: the list fetched by the page's script, in one piece.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from coupad.sim import content, mails

MB = 1_000_000
MAX_NUMBER_DIGITS = 30  # longer "numbers" are hostile input, shown as not found
SMALL_MIN = 1024
SMALL_MAX = 300 * 1024
CASES = (
    "link_only",
    "button_only",
    "both_shapes",
    "no_attachments",
    "requisition_only",
    "not_found",
    "not_found_variant",
    "access_denied",
    "access_denied_variant",
    "awkward_names",
    "rfc5987_names",
    "inline_pdf",
    "with_requisition",
    "banner",
    "mixed",
    "mixed",
    "mixed",
    "mixed",
    "mixed",
    "mixed",
)
OVERLAYS = ("large", "throttled", "server_error", "slow")
_OVERLAY_SUFFIX = {"999": "large", "429": "throttled", "503": "server_error", "777": "slow"}

SUPPLIERS = (
    "ACME Corp",
    "Müller & Söhne GmbH",
    "O'Brien Industrial, Ltd.",
    "Société Générale d'Équipement",
    "Globex Corporation",
    "Initech",
    "Umbrella Supplies",
    "Stark Industries",
    "Nakatomi Trading 株式会社",
    "Wayne Enterprises",
)
BANNERS = (
    "This order was revised. The changes are highlighted below.",
    "Information: this supplier is enabled for electronic invoicing.",
    "This order was revised after approval; the supplier has been notified.",
)
_STEMS = ("Quote", "Contract", "Invoice", "Approval", "Delivery note", "Specification", "Offer")
_EXTENSIONS = ("pdf", "docx", "xlsx", "msg", "eml", "zip", "png", "jpg", "txt", "csv")

# Each kind of name that breaks naive tools, all in one PO (case 9).
AWKWARD_NAMES = (
    "Quote 2024 final version.pdf",
    "Invoice, March; final.pdf",
    'Contract "signed".docx',
    "Q1/Q2 forecast.csv",
    "C:\\temp\\notes.txt",
    "../../etc/passwd",
    "CON.txt",
    "aux",
    "line\nbreak\x07bell.txt",
    "trailing dot. ",
    ("Very long attachment name " * 12)[:296] + ".pdf",
    "invoice.pdf",
    "invoice.pdf",
)
RFC5987_NAMES = (
    "Überweisungsbestätigung März.pdf",
    "Devis n°42 — Société Générale.docx",
    "合同 2024.pdf",
    "Ελληνικά έγγραφα.txt",
    "naïve café 📎.png",
)


class Shape(enum.StrEnum):
    """How the page shows an attachment."""

    LINK = "link"  # <a href=".../attachment_file/...">
    BUTTON = "button"  # <span role=button> whose URL lives only in JavaScript


class Disposition(enum.StrEnum):
    """How the download names its file."""

    PLAIN = "plain"  # attachment; filename="..."
    RFC5987 = "rfc5987"  # attachment; filename*=UTF-8''... (sometimes with a plain fallback)
    INLINE = "inline"  # inline; filename="..." as application/pdf


class Outcome(enum.StrEnum):
    """What a correct client ends with for a PO (transient trouble aside)."""

    COMPLETED = "COMPLETED"
    NO_ATTACHMENTS = "NO_ATTACHMENTS"
    NOT_FOUND = "NOT_FOUND"
    ACCESS_DENIED = "ACCESS_DENIED"
    # Only with permanently broken files, whose retries run out: some good files, or none.
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


class Arrival(enum.StrEnum):
    """How an attachment list, or one later slice of it, reaches the page."""

    REQUEST = "request"  # the page's own script fetches it; the server answers late
    TIMER = "timer"  # embedded in the page, rendered by setTimeout
    INLINE = "inline"  # in the served HTML from the start (the first slice only)
    # Embedded, rendered in an animation frame after the delay: a browser runs animation
    # frames only for a page that is visible, so a page in a background tab never shows it.
    FRAME = "frame"
    # The page's script fetches it, but only once the page is visible, as pages that pause
    # their work in a background tab do (the first slice only).
    VISIBLE = "visible"


class Noise(enum.StrEnum):
    """Background activity of a real page that never changes what it lists."""

    TICKER = "ticker"  # setInterval every 500 ms rewrites a "last refreshed" line, forever
    LONG_TIMER = "long_timer"  # setTimeout of 60 s that shows a session warning


class Decoy(enum.StrEnum):
    """Download-looking controls that are not attachments (no attachment URL or label)."""

    DOWNLOAD_ALL = "download_all"  # "Download all" link to a zip, beside the list
    EXPORT_XLSX = "export_xlsx"  # a link with the download attribute
    PRINT_BUTTON = "print_button"  # span[role=button] aria-label "Print this order"
    TERMS_PDF = "terms_pdf"  # a link whose text looks like a file name


DECOY_FILES = {
    Decoy.DOWNLOAD_ALL: "download_all.zip",
    Decoy.EXPORT_XLSX: "export.xlsx",
    Decoy.TERMS_PDF: "terms.pdf",
}


class Markup(enum.StrEnum):
    """Whether the list's ids and classes are the classic fixed ones or vary per page."""

    CLASSIC = "classic"  # #attachments, #attachment-list with aria-busy, fixed classes
    VARIED = "varied"  # ids, classes, button elements and titles drawn from the page's number


class Broken(enum.StrEnum):
    """A permanent problem of one attachment: its download URL always answers this."""

    NOT_FOUND = "not_found"  # 404
    FORBIDDEN = "forbidden"  # 403

    @property
    def status(self) -> int:
        return 404 if self is Broken.NOT_FOUND else 403


REQUISITION_MODES = ("when_po_has_none", "always", "never")  # coupa.requisition_attachments


class ErrorPage(enum.StrEnum):
    """The error page a PO shows instead of its content (always with HTTP 200)."""

    NOT_FOUND = "not_found"
    NOT_FOUND_VARIANT = "not_found_variant"
    NOT_FOUND_DE = "not_found_de"
    ACCESS_DENIED = "access_denied"
    ACCESS_DENIED_VARIANT = "access_denied_variant"
    ACCESS_DENIED_DE = "access_denied_de"
    ACCESS_DENIED_FR = "access_denied_fr"

    @property
    def outcome(self) -> Outcome:
        return Outcome.NOT_FOUND if self.value.startswith("not_found") else Outcome.ACCESS_DENIED


@dataclass(frozen=True)
class Attachment:
    """One file attached to a PO or requisition; ``id`` also seeds its bytes."""

    id: str
    name: str
    size: int
    shape: Shape = Shape.LINK
    disposition: Disposition = Disposition.PLAIN
    # RFC 5987 names also carry an ASCII filename="..." fallback when this is set.
    ascii_fallback: bool = False
    step: int = 0  # the slice of a growing list it arrives in (PageStyle.steps)
    redirect: bool = False  # the download URL answers 302 to a signed URL on the storage origin
    no_length: bool = False  # the body has no Content-Length and ends when the connection closes
    bandwidth: int | None = None  # bytes/s for this file; overrides the PO's and the preset's
    broken: Broken | None = None  # the download URL answers 404 or 403, every time
    mail: bool = False  # an Outlook mail made from its id (``size`` is the mail's)

    @property
    def pdf(self) -> bool:
        return self.disposition is Disposition.INLINE and not self.mail

    def body(self) -> bytes | None:
        """The whole file when it is made in one piece (a mail), else None (streamed)."""
        return mails.attachment_mail(self.id, self.name) if self.mail else None

    def chunks(self, chunk_size: int = content.CHUNK) -> Iterator[bytes]:
        """The file's bytes in pieces of at most ``chunk_size``."""
        body = self.body()
        if body is None:
            yield from content.chunks(self.id, self.size, pdf=self.pdf, chunk_size=chunk_size)
            return
        for start in range(0, len(body), chunk_size):
            yield body[start : start + chunk_size]

    @property
    def content_type(self) -> str:
        return "application/pdf" if self.pdf else "application/octet-stream"

    @property
    def path(self) -> str:
        """The download path; links and buttons use the two URL styles real tenants use."""
        if self.shape is Shape.LINK:
            return f"/attachment_file/{self.id}/download"
        return f"/attachments/{self.id}/download"

    def sha256(self) -> str:
        body = self.body()
        if body is not None:
            return hashlib.sha256(body).hexdigest()
        return content.sha256(self.id, self.size, pdf=self.pdf)

    def content_disposition(self) -> str:
        """The Content-Disposition header in the form this attachment asks for."""
        quoted = self.name.replace("\\", "\\\\").replace('"', '\\"')
        if self.disposition is Disposition.INLINE:
            return f'inline; filename="{quoted}"'
        if self.disposition is Disposition.PLAIN:
            return f'attachment; filename="{quoted}"'
        extended = "filename*=UTF-8''" + quote(self.name, safe="")
        if self.ascii_fallback:
            fallback = "".join(
                c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in self.name
            )
            return f'attachment; filename="{fallback}"; {extended}'
        return f"attachment; {extended}"

    def truth(self, base_url: str) -> dict[str, Any]:
        """What a client should end up with for this file, as the admin API reports it."""
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256(),
            "shape": self.shape.value,
            "disposition": self.disposition.value,
            "url": base_url + self.path,
            "step": self.step,
            "redirect": self.redirect,
            "no_length": self.no_length,
            "broken": self.broken.value if self.broken else None,
            "mail": self.mail,
        }


@dataclass(frozen=True)
class PageStyle:
    """How a PO or requisition page shows its attachment list, and what else it does."""

    arrival: Arrival = Arrival.REQUEST
    # Seconds after the page's script runs at which each slice of the list appears; empty:
    # one slice at the render delay (at once when inline).
    steps: tuple[float, ...] = ()
    growth: Arrival = Arrival.TIMER  # how slices after the first arrive: timer or request
    noise: tuple[Noise, ...] = ()
    decoys: tuple[Decoy, ...] = ()
    markup: Markup = Markup.CLASSIC

    def offsets(self, render_delay: float) -> tuple[float, ...]:
        """When each slice appears, in seconds after the page's script runs."""
        if self.steps:
            return self.steps
        return (0.0 if self.arrival is Arrival.INLINE else render_delay,)


def slices(attachments: tuple[Attachment, ...], count: int) -> list[tuple[Attachment, ...]]:
    """The attachments of each of ``count`` slices, in page order."""
    return [tuple(a for a in attachments if a.step == n) for n in range(count)]


def markup_token(owner: str) -> str:
    """Eight hex digits that vary a page's ids and classes (Markup.VARIED)."""
    return hashlib.sha256(f"coupad-sim:markup:{owner}".encode()).hexdigest()[:8]


@dataclass(frozen=True)
class PoTrouble:
    """Trouble tied to one PO page, counted per visit."""

    throttle_first: int = 0  # first N visits answer HTTP 429
    throttle_page_first: int = 0  # first N visits answer the HTTP 200 throttling page
    server_error_first: int = 0  # first N visits answer 500/502/503 in turn
    hang: bool = False  # the page never answers (until the server stops)
    page_delay: float | None = None  # extra server time for this PO's pages
    bandwidth: int | None = None  # bytes/s for this PO's downloads


@dataclass(frozen=True)
class Requisition:
    """A requisition page and its attachments."""

    id: str
    attachments: tuple[Attachment, ...] = ()
    render_delay: float | None = None
    page: PageStyle = field(default_factory=PageStyle)


@dataclass(frozen=True)
class PurchaseOrder:
    """Everything the simulator shows for one PO number."""

    digits: str
    case: str
    supplier: str | None
    requisition: str | None = None
    error: ErrorPage | None = None
    banner: str | None = None
    attachments: tuple[Attachment, ...] = ()
    render_delay: float | None = None
    trouble: PoTrouble = field(default_factory=PoTrouble)
    page: PageStyle = field(default_factory=PageStyle)

    @property
    def outcome(self) -> Outcome:
        if self.error is not None:
            return self.error.outcome
        return Outcome.COMPLETED if self.attachments else Outcome.NO_ATTACHMENTS


@dataclass(frozen=True)
class Latency:
    """Added time for benchmarks: server time per page, JS render delay, download speed."""

    page_delay: float = 0.0
    render_delay: float = 0.0
    bandwidth: int = 0  # bytes per second per download; 0 means unlimited


PRESETS: dict[str, Latency] = {
    "none": Latency(),
    # Resembles a real tenant: a page takes about a second, files arrive at a few MB/s.
    "realistic": Latency(page_delay=0.7, render_delay=0.4, bandwidth=4 * MB),
}


def is_number(text: str) -> bool:
    """Whether ``text`` can name a PO, requisition or attachment owner: ASCII digits, not absurdly many."""
    return 0 < len(text) <= MAX_NUMBER_DIGITS and text.isascii() and text.isdigit()


def _rng(kind: str, key: str) -> random.Random:
    # String seeds are hashed with SHA-512, so the sequence is the same in every process.
    return random.Random(f"coupad-sim:{kind}:{key}")


def _small_name(rng: random.Random, owner: str, n: int) -> str:
    return f"{rng.choice(_STEMS)} {owner}-{n}.{rng.choice(_EXTENSIONS)}"


def _attachments(
    rng: random.Random, prefix: str, owner: str, shapes: list[Shape]
) -> tuple[Attachment, ...]:
    return tuple(
        as_mail(Attachment(
            id=f"{prefix}-{n}",
            name=_small_name(rng, owner, n),
            size=rng.randint(SMALL_MIN, SMALL_MAX),
            shape=shape,
        ))
        for n, shape in enumerate(shapes, start=1)
    )


def as_mail(attachment: Attachment) -> Attachment:
    """A default attachment named ``*.msg`` as an Outlook mail, when mails can be made here."""
    if not attachment.name.lower().endswith(".msg") or not mails.available():
        return attachment
    mail = replace(attachment, mail=True)
    body = mail.body()
    assert body is not None
    return replace(mail, size=len(body))


def requisition_id_for(digits: str) -> str:
    """The requisition a default PO links to, derived from its digits."""
    return str(int(digits) % 900_000 + 100_000)


def default_requisition(req_id: str) -> Requisition:
    """The deterministic requisition for an id that no scenario file defines."""
    rng = _rng("requisition", req_id)
    shapes = [rng.choice((Shape.LINK, Shape.BUTTON)) for _ in range(rng.randint(1, 3))]
    return Requisition(
        id=req_id, attachments=_attachments(rng, f"R{req_id}", f"PR{req_id}", shapes)
    )


def default_po(digits: str) -> PurchaseOrder:
    """The deterministic PO for a number that no scenario file defines."""
    number = int(digits)
    rng = _rng("po", digits)
    case = CASES[number % 20]
    owner = f"PO{digits}"
    po = PurchaseOrder(
        digits=digits,
        case=case,
        supplier=SUPPLIERS[rng.randrange(len(SUPPLIERS))],
        banner=BANNERS[rng.randrange(len(BANNERS))] if rng.random() < 0.25 else None,
    )

    def files(*shapes: Shape) -> tuple[Attachment, ...]:
        return _attachments(rng, digits, owner, list(shapes))

    if case == "link_only":
        po = replace(po, attachments=files(*[Shape.LINK] * rng.randint(2, 3)))
    elif case == "button_only":
        po = replace(po, attachments=files(*[Shape.BUTTON] * rng.randint(2, 3)))
    elif case in ("both_shapes", "banner"):
        shapes = [Shape.LINK, Shape.BUTTON] + [
            rng.choice(list(Shape)) for _ in range(rng.randint(1, 2))
        ]
        po = replace(po, attachments=files(*shapes))
        if case == "banner":
            po = replace(po, banner=BANNERS[number // 20 % len(BANNERS)])
    elif case == "no_attachments":
        po = replace(po, banner=None)
    elif case == "requisition_only":
        po = replace(po, requisition=requisition_id_for(digits))
    elif case in ("not_found", "not_found_variant", "access_denied", "access_denied_variant"):
        variants = {
            "not_found": (ErrorPage.NOT_FOUND,),
            "not_found_variant": (ErrorPage.NOT_FOUND_VARIANT, ErrorPage.NOT_FOUND_DE),
            "access_denied": (ErrorPage.ACCESS_DENIED,),
            "access_denied_variant": (
                ErrorPage.ACCESS_DENIED_VARIANT,
                ErrorPage.ACCESS_DENIED_DE,
                ErrorPage.ACCESS_DENIED_FR,
            ),
        }[case]
        po = replace(po, supplier=None, banner=None, error=variants[number // 20 % len(variants)])
    elif case == "awkward_names":
        po = replace(po, attachments=_named(digits, AWKWARD_NAMES, rng))
    elif case == "rfc5987_names":
        po = replace(po, attachments=_named(digits, RFC5987_NAMES, rng))
    elif case == "inline_pdf":
        pdfs = [
            Attachment(
                id=f"{digits}-{n}",
                name=f"Signed order {owner} page {n}.pdf",
                size=rng.randint(SMALL_MIN, SMALL_MAX),
                shape=Shape.LINK if n == 1 else Shape.BUTTON,
                disposition=Disposition.INLINE,
            )
            for n in (1, 2)
        ]
        extra = as_mail(Attachment(
            id=f"{digits}-3",
            name=_small_name(rng, owner, 3),
            size=rng.randint(SMALL_MIN, SMALL_MAX),
        ))
        po = replace(po, attachments=(*pdfs, extra))
    elif case == "with_requisition":
        po = replace(
            po, requisition=requisition_id_for(digits), attachments=files(Shape.LINK, Shape.BUTTON)
        )
    else:  # mixed
        shapes = [rng.choice(list(Shape)) for _ in range(rng.randint(1, 4))]
        po = replace(po, attachments=files(*shapes))
        if rng.random() < 0.3:
            po = replace(po, requisition=requisition_id_for(digits))
    return _overlay(po, rng)


def _named(digits: str, names: tuple[str, ...], rng: random.Random) -> tuple[Attachment, ...]:
    awkward = []
    for n, name in enumerate(names, start=1):
        # Names a quoted-string cannot carry safely go out in the RFC 5987 form.
        simple = name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
        awkward.append(
            Attachment(
                id=f"{digits}-{n}",
                name=name,
                size=rng.randint(SMALL_MIN, SMALL_MAX),
                shape=Shape.LINK if n % 2 else Shape.BUTTON,
                disposition=Disposition.PLAIN if simple else Disposition.RFC5987,
                ascii_fallback=not simple and n % 2 == 1,
            )
        )
    return tuple(awkward)


def _overlay(po: PurchaseOrder, rng: random.Random) -> PurchaseOrder:
    overlay = _OVERLAY_SUFFIX.get(po.digits[-3:])
    if overlay is None:
        return po
    if overlay == "large":
        size = (int(po.digits[-4]) + 1) * 5 * MB if len(po.digits) >= 4 else 5 * MB
        big = Attachment(id=f"{po.digits}-1", name=f"Drawings PO{po.digits}.zip", size=size)
        small = Attachment(
            id=f"{po.digits}-2",
            name=f"Cover letter PO{po.digits}.pdf",
            size=rng.randint(SMALL_MIN, SMALL_MAX),
            shape=Shape.BUTTON,
        )
        return replace(
            po,
            case="large",
            error=None,
            supplier=po.supplier or SUPPLIERS[0],
            attachments=(big, small),
        )
    if overlay == "throttled":
        return replace(po, trouble=replace(po.trouble, throttle_first=2))
    if overlay == "server_error":
        return replace(po, trouble=replace(po.trouble, server_error_first=1))
    return replace(po, trouble=replace(po.trouble, page_delay=2.0, bandwidth=256 * 1024))


def examples(count: int = 3) -> dict[str, list[str]]:
    """Example PO numbers (digits) for every case and overlay, for tests and the demo."""
    base = 15_262_980  # divisible by 20, so base + case has that case
    found: dict[str, list[str]] = {}
    number = base
    while any(len(found.get(name, [])) < count for name in set(CASES)):
        digits = str(number)
        if digits[-3:] not in _OVERLAY_SUFFIX:
            bucket = found.setdefault(CASES[number % 20], [])
            if len(bucket) < count:
                bucket.append(digits)
        number += 1
    for suffix, overlay in _OVERLAY_SUFFIX.items():
        # 15260999 holds 5 MB, 15261999 10 MB, ...: the smallest large files come first.
        found[overlay] = [str(15_260_000 + 1000 * k + int(suffix)) for k in range(count)]
    return found


class Catalogue:
    """The default catalogue with a scenario's POs and requisitions laid over it."""

    def __init__(
        self,
        pos: Mapping[str, PurchaseOrder] | None = None,
        requisitions: Mapping[str, Requisition] | None = None,
    ) -> None:
        self._pos = dict(pos or {})
        self._requisitions = dict(requisitions or {})

    def po(self, digits: str) -> PurchaseOrder:
        return self._pos.get(digits) or default_po(digits)

    def requisition(self, req_id: str) -> Requisition:
        return self._requisitions.get(req_id) or default_requisition(req_id)

    def attachment(self, attachment_id: str) -> Attachment | None:
        """Find an attachment by id (``<digits>-<n>`` or ``R<requisition>-<n>``)."""
        owner, _, index = attachment_id.rpartition("-")
        if not is_number(index):
            return None
        if owner.startswith("R"):
            if not is_number(owner[1:]):
                return None
            candidates = self.requisition(owner[1:]).attachments
        elif is_number(owner):
            candidates = self.po(owner).attachments
        else:
            return None
        return next((a for a in candidates if a.id == attachment_id), None)

    def expected(
        self, digits: str, requisition_attachments: str = "when_po_has_none"
    ) -> tuple[Outcome, list[tuple[str, Attachment]]]:
        """The final status a correct client reaches and the files it ends with, as
        ``(source, attachment)``, when it fetches requisition files in the given mode
        (coupa.requisition_attachments; the requisition counts when the PO lists none)."""
        if requisition_attachments not in REQUISITION_MODES:
            raise ValueError(f"unknown requisition mode {requisition_attachments!r}")
        po = self.po(digits)
        if po.error is not None:
            return po.error.outcome, []
        wanted: list[tuple[str, Attachment]] = [("po", a) for a in po.attachments]
        with_requisition = requisition_attachments == "always" or (
            requisition_attachments == "when_po_has_none" and not po.attachments
        )
        if with_requisition and po.requisition:
            wanted += [("requisition", a) for a in self.requisition(po.requisition).attachments]
        good = [(source, a) for source, a in wanted if a.broken is None]
        if len(good) < len(wanted):
            return (Outcome.PARTIAL if good else Outcome.FAILED), good
        return (Outcome.COMPLETED if good else Outcome.NO_ATTACHMENTS), good

    def truth(
        self, digits: str, base_url: str = "", requisition_attachments: str = "when_po_has_none"
    ) -> dict[str, Any]:
        """The expected outcome and files of one PO, as GET /_sim/truth/<digits> returns it.

        ``outcome`` ignores requisitions and broken files (as it always did);
        ``expected_status`` and ``expected_files`` are what a correct client ends with when
        it fetches requisition files in the given mode.
        """
        po = self.po(digits)
        valid = po.error is None
        req = self.requisition(po.requisition) if po.requisition and valid else None
        status, files = self.expected(digits, requisition_attachments)
        return {
            "po": f"PO{digits}",
            "digits": digits,
            "outcome": po.outcome.value,
            "supplier": po.supplier if valid else None,
            "requisition_id": req.id if req else None,
            "attachments": [a.truth(base_url) for a in po.attachments] if valid else [],
            "requisition_attachments": [a.truth(base_url) for a in req.attachments] if req else [],
            "requisition_mode": requisition_attachments,
            "expected_status": status.value,
            "expected_files": [
                {"source": source, **a.truth(base_url)} for source, a in files
            ],
        }
