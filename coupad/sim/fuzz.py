"""Seeded PO pages drawn from everything Coupa's pages are known to do, for the fuzz check.

:func:`generate` turns a seed into purchase orders (and their requisitions) for the
simulator; the same seed always gives the same POs, and PO number ``index`` of a seed can be
regenerated alone (:func:`generate_one`), so one failing PO is replayed without the rest.
Every draw stays inside one :class:`Envelope`; each of its bounds says which behaviour of
Coupa's pages it models (the cases tests/test_domain_cases.py indexes). POs are built as a
scenario mapping and parsed by :func:`coupad.sim.scenario.from_mapping`, so a generated PO is valid by the same rules as a
scenario file, and the mapping can be saved and served by ``coupad sim --scenario``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coupad.sim.catalogue import (
    AWKWARD_NAMES,
    BANNERS,
    RFC5987_NAMES,
    SUPPLIERS,
    Catalogue,
    Decoy,
    Disposition,
    ErrorPage,
    Markup,
    Noise,
    PageStyle,
    PurchaseOrder,
    Requisition,
)
from coupad.sim.scenario import from_mapping

MAX_INDEX = 99_999  # five digits of index in every PO number


@dataclass(frozen=True)
class Envelope:
    """The bounds of every draw; shares are probabilities per PO (or per file where noted)."""

    # "Attachments can appear a moment later than the rest of the page — on a busy tenant,
    # seconds later — whether the page's own script fetches them or simply renders them late"
    render_delay_max: float = 3.0
    share_late: float = 0.3  # a render delay of 1 s up to render_delay_max (else below 1 s)
    share_timer: float = 0.3  # rendered by setTimeout, no request
    share_inline: float = 0.15  # in the HTML from the start
    # Rendered in an animation frame, or fetched only once the page is visible: what a page
    # does that pauses while it is in a background tab.
    share_frame: float = 0.1
    share_visible: float = 0.1
    # "a list can grow in steps (one file shown at once, more a second or two later)"
    share_growing: float = 0.25
    steps_max: int = 4
    last_step_max: float = 3.0  # seconds after load of the last slice
    # "A PO may have zero attachments."
    share_no_attachments: float = 0.1
    few_max: int = 4  # most POs have 1 to few_max attachments ...
    share_many: float = 0.06  # ... some have up to attachments_max
    attachments_max: int = 40
    # "Attachments are listed as elements whose aria-label reads "<file name> file
    # attachment" ... and/or as links whose href contains attachment_file or /attachments/"
    share_button: float = 0.45  # per file
    share_varied_markup: float = 0.5  # "positions change between Coupa releases"
    # "Sizes range from a few KB to tens of MB" (kept small here so a PO takes seconds)
    size_min: int = 1024
    size_max: int = 200 * 1024
    share_tiny: float = 0.05  # per file: under 1 KB
    # "Names can contain spaces, accents, commas, quotes, characters illegal on Windows,
    # and two attachments of one PO can share a name."
    share_awkward_name: float = 0.12  # per file
    share_duplicate_names: float = 0.1
    # "(sometimes the RFC 5987 filename*=UTF-8''... form)"; "some name the file only in the
    # RFC 5987 form"
    share_rfc5987: float = 0.15  # per plain-ASCII name; awkward names always use it
    share_ascii_fallback: float = 0.5  # of RFC 5987 names: also a filename="..." fallback
    # "Some responses carry no Content-Length (the body ends when the connection closes)"
    share_no_length: float = 0.1  # per file
    # "A download may be answered with a redirect to a file-storage host on another origin:
    # a time-limited signed URL, as cloud storage serves files."
    share_redirect: float = 0.1  # per file
    # "Under load Coupa answers slowly": slow bodies on a few files of a few POs
    share_slow: float = 0.08
    slow_files_max: int = 2
    slow_seconds_max: float = 1.5  # one slow body takes at most this long
    share_page_delay: float = 0.1
    page_delay_max: float = 1.0
    # "Generic "download" links on the page (export, print) are NOT attachments."
    share_decoys: float = 0.3
    # "Coupa pages are a JavaScript-heavy app": tickers and long timers that never settle
    share_noise: float = 0.25
    # "A plain informational banner on a valid PO is not an error."
    share_banner: float = 0.15
    # "Error pages are shown with HTTP 200 and text such as "Oops! ..." (PO does not
    # exist), "You are not authorized" or "Access denied" ..., plus localized variants."
    share_not_found: float = 0.05
    share_access_denied: float = 0.05
    # "Under load Coupa answers slowly, with 5xx errors, or with HTTP 429 / a throttling
    # page." On first visits only, and fewer than coupad's tasks.max_attempts (5).
    share_trouble: float = 0.12
    trouble_visits_max: int = 2
    # "A PO may have zero attachments. Its requisition may carry the quote or approval
    # documents instead; users want those too."
    share_requisition: float = 0.2
    requisition_files_max: int = 3
    # Beyond what pages show, files do go missing: a small share of POs have files
    # whose download answers 404 or 403 every time (the PO ends PARTIAL or FAILED).
    share_broken: float = 0.04


ENVELOPE = Envelope()

# What a generated PO may exercise; every one occurs within a few hundred POs of any seed.
FEATURES = (
    "arrival:request",
    "arrival:timer",
    "arrival:inline",
    "arrival:frame",
    "arrival:visible",
    "late",
    "growing",
    "grow_by:timer",
    "grow_by:request",
    "no_attachments",
    "many",
    "both_shapes",
    "varied_markup",
    "tiny",
    "awkward_name",
    "duplicate_names",
    "rfc5987_only",
    "no_length",
    "redirect",
    "slow",
    "page_delay",
    "decoys",
    "noise:ticker",
    "noise:long_timer",
    "banner",
    "not_found",
    "access_denied",
    "throttle_429",
    "throttle_page",
    "server_error",
    "requisition",
    "requisition_files",
    "broken",
)

_STEMS = ("Quote", "Contract", "Invoice", "Approval", "Delivery note", "Specification",
          "Offer", "Drawing", "Certificate", "Angebot", "Devis")
_EXTENSIONS = ("pdf", "docx", "xlsx", "msg", "eml", "zip", "png", "jpg", "txt", "csv")
# More names that break naive tools, beside the catalogue's awkward and RFC 5987 ones.
_MORE_AWKWARD = (
    "a:b*c?d|e<f>.txt",
    "<script>alert(1)</script>.html",
    "  leading and trailing spaces  .pdf",
    "Quote,final;v2 (1).pdf",
    "O'Brien's offer.docx",
    "résumé final.PDF",
    "no extension",
    ".hidden",
    "tab\there.txt",
    "%41%42 percent-encoded.pdf",
    "file attachment.pdf",
)
_NOT_FOUND = (ErrorPage.NOT_FOUND, ErrorPage.NOT_FOUND_VARIANT, ErrorPage.NOT_FOUND_DE)
_ACCESS_DENIED = (
    ErrorPage.ACCESS_DENIED,
    ErrorPage.ACCESS_DENIED_VARIANT,
    ErrorPage.ACCESS_DENIED_DE,
    ErrorPage.ACCESS_DENIED_FR,
)


@dataclass(frozen=True)
class Generated:
    """The POs of one seed, their requisitions, and the scenario mapping they came from."""

    seed: int
    indexes: tuple[int, ...]
    pos: tuple[PurchaseOrder, ...]
    requisitions: dict[str, Requisition]
    scenario: dict[str, Any] = field(repr=False)

    def catalogue(self) -> Catalogue:
        return Catalogue({po.digits: po for po in self.pos}, self.requisitions)

    def index_of(self, digits: str) -> int:
        return self.indexes[[po.digits for po in self.pos].index(digits)]

    def features(self, digits: str) -> set[str]:
        po = self.pos[[p.digits for p in self.pos].index(digits)]
        return features(po, self.requisitions.get(po.requisition or ""))


def prefix(seed: int) -> str:
    """The three digits every PO number of this seed starts with."""
    return str(100 + int(hashlib.sha256(f"coupad-fuzz:{seed}".encode()).hexdigest(), 16) % 900)


def digits_for(seed: int, index: int) -> str:
    """The PO number (digits) of PO ``index`` of ``seed``: the seed's prefix, then the index."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index must be 0 to {MAX_INDEX}, got {index}")
    return f"{prefix(seed)}{index:05d}"


def generate(seed: int, count: int, envelope: Envelope = ENVELOPE) -> Generated:
    """POs 0 to ``count - 1`` of ``seed``."""
    if not 0 <= count <= MAX_INDEX + 1:
        raise ValueError(f"count must be 0 to {MAX_INDEX + 1}, got {count}")
    return generate_only(seed, range(count), envelope)


def generate_one(seed: int, index: int, envelope: Envelope = ENVELOPE) -> Generated:
    """PO ``index`` of ``seed`` alone, exactly as :func:`generate` makes it."""
    return generate_only(seed, [index], envelope)


def generate_only(seed: int, indexes: Iterable[int], envelope: Envelope = ENVELOPE) -> Generated:
    """The given POs of ``seed``, each drawn from (seed, index) alone."""
    chosen = tuple(dict.fromkeys(indexes))
    scenario: dict[str, Any] = {"po": {}, "requisition": {}}
    for index in chosen:
        digits, po, requisition = draw(seed, index, envelope)
        scenario["po"][digits] = po
        if requisition is not None:
            scenario["requisition"][po["requisition"]] = requisition
    parsed = from_mapping(scenario, source=f"fuzz seed {seed}")
    pos = tuple(parsed.pos[digits_for(seed, index)] for index in chosen)
    return Generated(seed, chosen, pos, parsed.requisitions, scenario)


# ---- one PO -------------------------------------------------------------------------------


def draw(
    seed: int, index: int, envelope: Envelope = ENVELOPE
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """PO ``index`` of ``seed`` as scenario tables: (digits, PO table, requisition table)."""
    digits = digits_for(seed, index)
    rng = random.Random(f"coupad-fuzz:{seed}:{index}")
    env = envelope
    po: dict[str, Any] = {"supplier": rng.choice(SUPPLIERS)}
    trouble = _trouble(rng, env)
    if trouble:
        po["trouble"] = trouble
    if rng.random() < env.share_page_delay:
        po["page_delay"] = round(rng.uniform(0.1, env.page_delay_max), 2)
    error = rng.random()
    if error < env.share_not_found + env.share_access_denied:
        variants = _NOT_FOUND if error < env.share_not_found else _ACCESS_DENIED
        po["error"] = rng.choice(variants).value
        del po["supplier"]
        return digits, po, None
    if rng.random() < env.share_banner:
        po["banner"] = rng.choice(BANNERS)
    count = _count(rng, env)
    page = _page(rng, env)
    po.update(page)
    steps = len(page.get("page", {}).get("steps", ())) or 1
    po["attachments"] = _files(rng, env, count, steps)
    requisition = None
    if rng.random() < env.share_requisition:
        po["requisition"] = digits
        requisition = _requisition(rng, env)
    if rng.random() < env.share_broken:
        # The files a client would fetch: the PO's own, else the requisition's.
        targets = po["attachments"] or (requisition or {}).get("attachments", [])
        for entry in rng.sample(targets, k=min(len(targets), rng.randint(1, 2))):
            entry["broken"] = rng.choice(("not_found", "forbidden"))
    return digits, po, requisition


def _trouble(rng: random.Random, env: Envelope) -> dict[str, int]:
    if rng.random() >= env.share_trouble:
        return {}
    visits = rng.randint(1, env.trouble_visits_max)
    trouble: dict[str, int] = {}
    for _ in range(visits):
        kind = rng.choice(("throttle_first", "throttle_page_first", "server_error_first"))
        trouble[kind] = trouble.get(kind, 0) + 1
    return trouble


def _count(rng: random.Random, env: Envelope) -> int:
    if rng.random() < env.share_no_attachments:
        return 0
    if rng.random() < env.share_many:
        return rng.randint(env.few_max + 1, env.attachments_max)
    return rng.randint(1, env.few_max)


def _page(rng: random.Random, env: Envelope) -> dict[str, Any]:
    """The PO-level keys of a page style: ``page`` and ``render_delay``."""
    style: dict[str, Any] = {}
    pick = rng.random()
    arrival = "request"
    for kind, share in (("timer", env.share_timer), ("inline", env.share_inline),
                        ("frame", env.share_frame), ("visible", env.share_visible)):
        if pick < share:
            arrival = kind
            break
        pick -= share
    keys: dict[str, Any] = {}
    if arrival != "request":
        style["arrival"] = arrival
    if rng.random() < env.share_growing:
        count = rng.randint(2, env.steps_max)
        cuts = sorted(rng.sample(range(1, int(env.last_step_max * 20) + 1), count))
        steps = [cut / 20 for cut in cuts]
        if arrival == "inline":
            steps[0] = 0.0
        style["steps"] = steps
        style["grow_by"] = rng.choice(("timer", "request"))
    elif arrival != "inline":
        late = rng.random() < env.share_late
        delay = rng.uniform(1.0, env.render_delay_max) if late else rng.uniform(0.0, 1.0)
        keys["render_delay"] = round(delay, 2)
    if rng.random() < env.share_varied_markup:
        style["markup"] = "varied"
    if rng.random() < env.share_noise:
        style["noise"] = rng.sample([n.value for n in Noise], k=rng.randint(1, len(Noise)))
    if rng.random() < env.share_decoys:
        style["decoys"] = rng.sample([d.value for d in Decoy], k=rng.randint(1, len(Decoy)))
    if style:
        keys["page"] = style
    return keys


def _files(rng: random.Random, env: Envelope, count: int, steps: int) -> list[dict[str, Any]]:
    names = [_name(rng, env, n) for n in range(1, count + 1)]
    if count >= 2 and rng.random() < env.share_duplicate_names:
        names[rng.randrange(1, count)] = names[0]
    slow = set()
    if count and rng.random() < env.share_slow:
        slow = set(rng.sample(range(count), k=min(count, rng.randint(1, env.slow_files_max))))
    files = []
    for n, name in enumerate(names):
        tiny = rng.random() < env.share_tiny
        size = rng.randint(1, env.size_min - 1) if tiny else rng.randint(env.size_min, env.size_max)
        entry: dict[str, Any] = {
            "name": name,
            "size": size,
            "shape": "button" if rng.random() < env.share_button else "link",
        }
        entry.update(_disposition(rng, env, name))
        if steps > 1:
            entry["step"] = rng.randrange(steps)
        if rng.random() < env.share_redirect:
            entry["redirect"] = True
        if rng.random() < env.share_no_length:
            entry["no_length"] = True
        if n in slow:
            seconds = rng.uniform(0.5, env.slow_seconds_max)
            entry["bandwidth"] = max(1024, int(size / seconds))
        files.append(entry)
    return files


def _name(rng: random.Random, env: Envelope, n: int) -> str:
    if rng.random() < env.share_awkward_name:
        return rng.choice(AWKWARD_NAMES + RFC5987_NAMES + _MORE_AWKWARD)
    return f"{rng.choice(_STEMS)} {n}.{rng.choice(_EXTENSIONS)}"


def _disposition(rng: random.Random, env: Envelope, name: str) -> dict[str, Any]:
    # Names a quoted-string cannot carry safely go out in the RFC 5987 form, as Coupa's do.
    simple = name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
    if simple and rng.random() >= env.share_rfc5987:
        return {}
    if rng.random() < env.share_ascii_fallback:
        return {"disposition": "rfc5987", "ascii_fallback": True}
    return {"disposition": "rfc5987"}


def _requisition(rng: random.Random, env: Envelope) -> dict[str, Any]:
    count = rng.randint(0, env.requisition_files_max)
    keys = _page(rng, env)
    steps = len(keys.get("page", {}).get("steps", ())) or 1
    return {**keys, "attachments": _files(rng, env, count, steps)}


# ---- what a PO exercises --------------------------------------------------------------------


def features(po: PurchaseOrder, requisition: Requisition | None = None) -> set[str]:
    """The envelope dimensions (:data:`FEATURES`) this PO exercises."""
    found: set[str] = set()
    trouble = po.trouble
    for name, count in (("throttle_429", trouble.throttle_first),
                        ("throttle_page", trouble.throttle_page_first),
                        ("server_error", trouble.server_error_first)):
        if count:
            found.add(name)
    if trouble.page_delay:
        found.add("page_delay")
    if po.error is not None:
        found.add("not_found" if po.error.value.startswith("not_found") else "access_denied")
        return found
    if po.banner:
        found.add("banner")
    if po.requisition:
        found.add("requisition")
        if requisition is not None and requisition.attachments:
            found.add("requisition_files")
    found |= _page_features(po.page, po.render_delay)
    if requisition is not None:
        found |= _page_features(requisition.page, requisition.render_delay) - {"late"}
    files = po.attachments + (requisition.attachments if requisition is not None else ())
    if not po.attachments:
        found.add("no_attachments")
    if len(po.attachments) > ENVELOPE.few_max:
        found.add("many")
    if len({a.shape for a in po.attachments}) == 2:
        found.add("both_shapes")
    names = [a.name for a in po.attachments]
    if len(set(names)) < len(names):
        found.add("duplicate_names")
    awkward = set(AWKWARD_NAMES + RFC5987_NAMES + _MORE_AWKWARD)
    for a in files:
        if a.size < ENVELOPE.size_min:
            found.add("tiny")
        if a.name in awkward:
            found.add("awkward_name")
        if a.disposition is Disposition.RFC5987 and not a.ascii_fallback:
            found.add("rfc5987_only")
        if a.no_length:
            found.add("no_length")
        if a.redirect:
            found.add("redirect")
        if a.bandwidth:
            found.add("slow")
        if a.broken:
            found.add("broken")
    return found


def _page_features(page: PageStyle, render_delay: float | None) -> set[str]:
    found = {f"arrival:{page.arrival.value}"}
    if page.steps:
        found |= {"growing", f"grow_by:{page.growth.value}"}
    if (render_delay or 0) >= 1.0 or (page.steps and page.steps[0] >= 1.0):
        found.add("late")
    if page.markup is Markup.VARIED:
        found.add("varied_markup")
    found |= {f"noise:{n.value}" for n in page.noise}
    if page.decoys:
        found.add("decoys")
    return found


def feature_counts(generated: Generated, digits: Sequence[str] | None = None) -> dict[str, int]:
    """How many of the given POs (default: all) exercise each feature."""
    counts = dict.fromkeys(FEATURES, 0)
    for d in digits if digits is not None else [po.digits for po in generated.pos]:
        for name in generated.features(d):
            counts[name] += 1
    return counts
