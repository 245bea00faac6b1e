"""Scenario files (TOML or JSON): POs, requisitions, latency and trouble that override defaults.

Example::

    seed = 7                      # seeds the RNG of the trouble rates
    [po.15262984]
    supplier = "ACME Corp"
    requisition = "4711"          # optional
    # error = "not_found"         # optional, instead of attachments: not_found,
                                  # not_found_variant, not_found_de, access_denied,
                                  # access_denied_variant, access_denied_de, access_denied_fr
    banner = "This order was revised."  # optional informational banner
    page_delay = 0.5              # optional, seconds of server time for this PO's page
    render_delay = 0.2            # optional, seconds before its attachment list appears
    # optional, counted per visit: throttle_first (429), throttle_page_first (200 page),
    # server_error_first (500, 502, 503 in turn), hang, page_delay, bandwidth (bytes/s)
    trouble = {throttle_first = 2, server_error_first = 1, bandwidth = 100000}
    [[po.15262984.attachments]]
    name = "quote.pdf"
    size = 2048                   # bytes, default 1024
    shape = "link"                # link (default) | button
    disposition = "rfc5987"       # plain (default) | rfc5987 | inline (a PDF)
    ascii_fallback = true         # rfc5987 only: also send filename="..." in ASCII
    [[po.15262984.attachments]]
    name = "quote.pdf"            # two files of one PO may share a name
    redirect = true               # 302 to a signed URL on the file-storage origin
    no_length = true              # no Content-Length: the body ends when the connection closes
    bandwidth = 50000             # bytes/s for this file alone
    # broken = "not_found"        # not_found (404) | forbidden (403), on every download
    [[po.15262984.attachments]]
    name = "approval.msg"
    mail = true                   # an Outlook mail made from its id (no size: the mail's own);
                                  # needs coupad[msg]. Without it a .msg is random bytes.
    [po.15262985]
    render_delay = 1.0
    page = {arrival = "timer", noise = ["ticker"], decoys = ["download_all"]}
    [po.15262986]
    # How the list arrives: request (default: the page's script fetches attachments.json,
    # answered after the render delay) | timer (embedded, rendered by setTimeout after the
    # render delay) | frame (as timer, then in an animation frame: only while the page is
    # visible) | visible (as request, sent only once the page is visible) | inline (in the
    # HTML). steps: the list grows in 1-4 slices shown at
    # these seconds after load (instead of render_delay); grow_by: how slices after the
    # first arrive, timer (default) | request (attachments.json?part=<n>, answered when due).
    # noise: ticker (setInterval 500 ms, forever) | long_timer (setTimeout 60 s).
    # decoys: download_all | export_xlsx | print_button | terms_pdf (never attachments).
    # markup: classic (fixed ids, aria-busy) | varied (ids, classes, elements per page).
    page = {arrival = "inline", steps = [0.0, 1.5], grow_by = "request", markup = "varied"}
    [[po.15262986.attachments]]
    name = "shown at once.pdf"
    [[po.15262986.attachments]]
    name = "shown later.pdf"
    shape = "button"
    step = 1                      # the slice it arrives in (default 0)
    [requisition.4711]            # also page and render_delay, as for a PO
    [[requisition.4711.attachments]]
    name = "approval.msg"
    size = 5000
    [latency]                     # overrides the preset
    page_delay = 1.0
    render_delay = 0.5
    bandwidth = 4000000
    [trouble]                     # global, like POST /_sim/trouble
    rate_429 = 0.05               # also rate_throttle_page, rate_5xx (0-1, summing to <= 1)
    page_delay = 0.0
    hang_paths = ["/requisition_headers/*"]   # exact paths, or prefixes ending in *

A PO in the file is exactly what the file says, except that a missing ``supplier`` comes
from the default catalogue. POs not in the file keep their default scenario. Any mistake
raises :class:`ScenarioError` naming the key path and the line of the file.

Bodies without Content-Length are close-delimited (no chunked encoding): the response says
``Connection: close`` and the server closes the connection after the last byte. The storage
origin of ``redirect = true`` listens beside the tenant and is advertised as
``http://localhost:<port>`` (``127.0.0.1`` when the tenant itself is ``localhost``): another
host, so the tenant's cookies are not sent to it.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from coupad.errors import CoupadError, ExitCode
from coupad.ponumber import InvalidPoNumber, normalize
from coupad.sim.catalogue import (
    Arrival,
    Attachment,
    Broken,
    Catalogue,
    Decoy,
    Disposition,
    ErrorPage,
    Latency,
    Markup,
    Noise,
    PageStyle,
    PoTrouble,
    PurchaseOrder,
    Requisition,
    Shape,
    default_po,
    is_number,
)
from coupad.sim import mails
from coupad.sim.lines import KeyPath, json_lines, toml_lines
from coupad.sim.trouble import Trouble

MAX_SIZE = 200_000_000
MAX_STEPS = 4  # slices of a growing list
MAX_STEP_OFFSET = 60.0  # seconds after load of the last slice
E = TypeVar("E")


class ScenarioError(CoupadError):
    """A scenario file or trouble setting is invalid; the message names the key and line."""

    exit_code = ExitCode.CONFIG


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario: overrides for the catalogue, the latency preset and trouble."""

    pos: dict[str, PurchaseOrder] = field(default_factory=dict)
    requisitions: dict[str, Requisition] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    trouble: Trouble = field(default_factory=Trouble)
    seed: int = 0

    def catalogue(self) -> Catalogue:
        return Catalogue(self.pos, self.requisitions)

    def latency_over(self, preset: Latency) -> Latency:
        """The preset with this scenario's ``[latency]`` keys laid over it."""
        return replace(preset, **self.latency)  # type: ignore[arg-type]


class _Where:
    """Turns a key path into an error message with the line it came from."""

    def __init__(self, source: str, lines: dict[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: KeyPath, message: str) -> ScenarioError:
        line = None
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                break
        where = f"{self.source}, line {line}" if line else self.source
        return ScenarioError(f"{where}: {dotted(path)}: {message}")


def dotted(path: KeyPath) -> str:
    """``po.15262984.attachments[0].size`` for a key path."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = (
                part
                if re.fullmatch(r"[A-Za-z0-9_-]+", part)
                else json.dumps(part, ensure_ascii=False)
            )
            text += f".{shown}" if text else shown
    return text or "(top level)"


# ---- loading -----------------------------------------------------------------------------


def load(path: Path) -> Scenario:
    """Read and validate a scenario file; TOML unless it ends in .json."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc}") from None
    source = str(path)
    if str(path).lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{source}, line {exc.lineno}: invalid JSON: {exc.msg}") from None
        lines = json_lines(text)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
        lines = toml_lines(text)
    return _scenario(data, _Where(source, lines))


def from_mapping(data: Mapping[str, Any], source: str = "scenario") -> Scenario:
    """Validate an already-parsed scenario (no line numbers to report)."""
    return _scenario(data, _Where(source, {}))


def parse_trouble(data: object, key: str = "trouble", where: _Where | None = None) -> Trouble:
    """Validate global trouble settings (the ``[trouble]`` table or POST /_sim/trouble)."""
    where = where or _Where("trouble", {})
    path: KeyPath = (key,)
    table = _table(data, path, where)
    _known(table, {f.name for f in fields(Trouble)}, path, where)
    rates = {}
    for name in ("rate_429", "rate_throttle_page", "rate_5xx"):
        if name in table:
            rates[name] = _number(table[name], path + (name,), where, low=0.0, high=1.0)
    if sum(rates.values()) > 1.0:
        raise where.fail(path, "the rates add up to more than 1")
    hang_paths = _list(table.get("hang_paths", []), path + ("hang_paths",), where)
    for n, pattern in enumerate(hang_paths):
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise where.fail(path + ("hang_paths", n), "expected a path starting with /")
    until = table.get("until")
    return Trouble(
        **rates,
        page_delay=_number(table.get("page_delay", 0.0), path + ("page_delay",), where, low=0.0),
        hang_paths=tuple(hang_paths),
        until=None if until is None else _number(until, path + ("until",), where, low=0.0),
    )


# ---- validation --------------------------------------------------------------------------


def _scenario(data: object, where: _Where) -> Scenario:
    top = _table(data, (), where)
    _known(top, {"po", "requisition", "latency", "trouble", "seed"}, (), where)
    requisitions: dict[str, Requisition] = {}
    for req_id, value in _table(top.get("requisition", {}), ("requisition",), where).items():
        path: KeyPath = ("requisition", req_id)
        if not is_number(req_id):
            raise where.fail(path, "a requisition id must be digits")
        table = _table(value, path, where)
        _known(table, {"attachments", "page", "render_delay"}, path, where)
        page = _page(table, path, where)
        requisitions[req_id] = Requisition(
            id=req_id,
            attachments=_attachments(table, path, f"R{req_id}", page, where),
            render_delay=_render_delay(table, page, path, where),
            page=page,
        )
    pos: dict[str, PurchaseOrder] = {}
    for key, value in _table(top.get("po", {}), ("po",), where).items():
        po = _po(key, value, where)
        if po.digits in pos:
            raise where.fail(("po", key), f"PO{po.digits} is defined twice")
        pos[po.digits] = po
    latency_table = _table(top.get("latency", {}), ("latency",), where)
    _known(latency_table, {"page_delay", "render_delay", "bandwidth"}, ("latency",), where)
    latency: dict[str, float] = {}
    for name in ("page_delay", "render_delay"):
        if name in latency_table:
            latency[name] = _number(latency_table[name], ("latency", name), where, low=0.0)
    if "bandwidth" in latency_table:
        latency["bandwidth"] = _integer(
            latency_table["bandwidth"], ("latency", "bandwidth"), where, low=0
        )
    trouble = parse_trouble(top["trouble"], "trouble", where) if "trouble" in top else Trouble()
    seed = _integer(top.get("seed", 0), ("seed",), where)
    return Scenario(pos=pos, requisitions=requisitions, latency=latency, trouble=trouble, seed=seed)


_PO_KEYS = {
    "supplier",
    "requisition",
    "error",
    "banner",
    "page_delay",
    "render_delay",
    "attachments",
    "trouble",
    "page",
}


def _po(key: str, value: object, where: _Where) -> PurchaseOrder:
    path: KeyPath = ("po", key)
    try:
        digits = normalize(key).digits
    except InvalidPoNumber as exc:
        raise where.fail(path, str(exc)) from None
    table = _table(value, path, where)
    _known(table, _PO_KEYS, path, where)
    error = (
        _choice(table["error"], ErrorPage, path + ("error",), where) if "error" in table else None
    )
    if error is not None and table.get("attachments"):
        raise where.fail(
            path + ("attachments",), f'a PO with error = "{error}" shows no attachments'
        )
    requisition = table.get("requisition")
    if requisition is not None:
        if isinstance(requisition, int) and not isinstance(requisition, bool):
            requisition = str(requisition)
        if not isinstance(requisition, str) or not is_number(requisition):
            raise where.fail(path + ("requisition",), "expected a requisition id made of digits")
    supplier = table.get("supplier", None if error else default_po(digits).supplier)
    if supplier is not None:
        supplier = _string(supplier, path + ("supplier",), where)
    banner = _string(table["banner"], path + ("banner",), where) if "banner" in table else None
    trouble = _po_trouble(table.get("trouble", {}), path + ("trouble",), where)
    if "page_delay" in table:
        delay = _number(table["page_delay"], path + ("page_delay",), where, low=0.0)
        trouble = replace(
            trouble, page_delay=trouble.page_delay if trouble.page_delay is not None else delay
        )
    page = _page(table, path, where)
    return PurchaseOrder(
        digits=digits,
        case="scenario",
        supplier=supplier,
        requisition=requisition,
        error=error,
        banner=banner,
        attachments=_attachments(table, path, digits, page, where),
        render_delay=_render_delay(table, page, path, where),
        trouble=trouble,
        page=page,
    )


def _render_delay(
    table: Mapping[str, Any], page: PageStyle, path: KeyPath, where: _Where
) -> float | None:
    if "render_delay" not in table:
        return None
    key = path + ("render_delay",)
    if page.steps:
        raise where.fail(key, "give render_delay or page.steps, not both")
    if page.arrival is Arrival.INLINE:
        raise where.fail(key, 'an inline list is in the page at once: render_delay does not apply')
    return _number(table["render_delay"], key, where, low=0.0)


_PAGE_KEYS = {"arrival", "steps", "grow_by", "noise", "decoys", "markup"}


def _page(table: Mapping[str, Any], owner: KeyPath, where: _Where) -> PageStyle:
    if "page" not in table:
        return PageStyle()
    path = owner + ("page",)
    page = _table(table["page"], path, where)
    _known(page, _PAGE_KEYS, path, where)
    arrival = _choice(page.get("arrival", "request"), Arrival, path + ("arrival",), where)
    steps: list[float] = []
    if "steps" in page:
        items = _list(page["steps"], path + ("steps",), where)
        if not 1 <= len(items) <= MAX_STEPS:
            raise where.fail(path + ("steps",), f"expected 1 to {MAX_STEPS} offsets, got {len(items)}")
        for n, item in enumerate(items):
            offset = _number(item, path + ("steps", n), where, low=0.0, high=MAX_STEP_OFFSET)
            if steps and offset <= steps[-1]:
                raise where.fail(path + ("steps", n), "offsets must increase")
            steps.append(offset)
        if arrival is Arrival.INLINE and steps[0] != 0:
            raise where.fail(
                path + ("steps", 0), "an inline list is in the page at once: the first offset is 0"
            )
    grow_by = _choice(page.get("grow_by", "timer"), Arrival, path + ("grow_by",), where)
    if grow_by not in (Arrival.TIMER, Arrival.REQUEST):
        raise where.fail(path + ("grow_by",), "later slices arrive by timer or request")
    return PageStyle(
        arrival=arrival,
        steps=tuple(steps),
        growth=grow_by,
        noise=_unique_choices(page.get("noise", []), Noise, path + ("noise",), where),
        decoys=_unique_choices(page.get("decoys", []), Decoy, path + ("decoys",), where),
        markup=_choice(page.get("markup", "classic"), Markup, path + ("markup",), where),
    )


def _unique_choices(
    value: object, kind: Callable[[str], E], path: KeyPath, where: _Where
) -> tuple[E, ...]:
    chosen: list[E] = []
    for n, item in enumerate(_list(value, path, where)):
        choice = _choice(item, kind, path + (n,), where)
        if choice in chosen:
            raise where.fail(path + (n,), f"{item!r} is listed twice")
        chosen.append(choice)
    return tuple(chosen)


def _po_trouble(value: object, path: KeyPath, where: _Where) -> PoTrouble:
    table = _table(value, path, where)
    _known(table, {f.name for f in fields(PoTrouble)}, path, where)
    counts = {
        name: _integer(table[name], path + (name,), where, low=0)
        for name in ("throttle_first", "throttle_page_first", "server_error_first")
        if name in table
    }
    return PoTrouble(
        **counts,
        hang=_boolean(table.get("hang", False), path + ("hang",), where),
        page_delay=_number(table["page_delay"], path + ("page_delay",), where, low=0.0)
        if "page_delay" in table
        else None,
        bandwidth=_integer(table["bandwidth"], path + ("bandwidth",), where, low=1)
        if "bandwidth" in table
        else None,
    )


_ATTACHMENT_KEYS = {
    "name",
    "size",
    "shape",
    "disposition",
    "ascii_fallback",
    "step",
    "redirect",
    "no_length",
    "bandwidth",
    "broken",
    "mail",
}


def _attachments(
    table: Mapping[str, Any], path: KeyPath, prefix: str, page: PageStyle, where: _Where
) -> tuple[Attachment, ...]:
    items = _list(table.get("attachments", []), path + ("attachments",), where)
    result = []
    for n, item in enumerate(items):
        item_path = path + ("attachments", n)
        entry = _table(item, item_path, where)
        _known(entry, _ATTACHMENT_KEYS, item_path, where)
        if "name" not in entry:
            raise where.fail(item_path + ("name",), "every attachment needs a name")
        name = _string(entry["name"], item_path + ("name",), where)
        if not name or len(name) > 1000:
            raise where.fail(item_path + ("name",), "expected 1 to 1000 characters")
        size = _integer(entry.get("size", 1024), item_path + ("size",), where, low=0, high=MAX_SIZE)
        shape = _choice(entry.get("shape", "link"), Shape, item_path + ("shape",), where)
        disposition = _choice(
            entry.get("disposition", "plain"), Disposition, item_path + ("disposition",), where
        )
        if disposition is not Disposition.RFC5987 and not name.isprintable():
            # A header cannot carry control characters in a quoted string.
            raise where.fail(
                item_path + ("name",), 'control characters need disposition = "rfc5987"'
            )
        slices = max(1, len(page.steps))
        step = _integer(entry.get("step", 0), item_path + ("step",), where, low=0)
        if step >= slices:
            raise where.fail(
                item_path + ("step",),
                f"the page shows its list in {slices} slice(s) (page.steps): expected 0 to "
                f"{slices - 1}",
            )
        broken = (
            _choice(entry["broken"], Broken, item_path + ("broken",), where)
            if "broken" in entry
            else None
        )
        mail = _boolean(entry.get("mail", False), item_path + ("mail",), where)
        if mail:
            _mail_allowed(entry, item_path, disposition, where)
        result.append(
            Attachment(
                id=f"{prefix}-{n + 1}",
                name=name,
                size=size,
                shape=shape,
                disposition=disposition,
                ascii_fallback=_boolean(
                    entry.get("ascii_fallback", False), item_path + ("ascii_fallback",), where
                ),
                step=step,
                redirect=_boolean(entry.get("redirect", False), item_path + ("redirect",), where),
                no_length=_boolean(
                    entry.get("no_length", False), item_path + ("no_length",), where
                ),
                bandwidth=_integer(entry["bandwidth"], item_path + ("bandwidth",), where, low=1)
                if "bandwidth" in entry
                else None,
                broken=broken,
                mail=mail,
            )
        )
    return tuple(
        replace(a, size=len(a.body() or b"")) if a.mail else a for a in result)


def _mail_allowed(entry: Mapping[str, Any], path: KeyPath, disposition: Disposition,
                  where: _Where) -> None:
    if "size" in entry:
        raise where.fail(path + ("size",), "a mail's size is the mail's own: leave size out")
    if disposition is Disposition.INLINE:
        raise where.fail(path + ("disposition",), "a mail is not an inline PDF")
    if not mails.available():
        raise where.fail(path + ("mail",), "mail = true needs extract-msg "
                                           "(pip install coupad[msg])")


# ---- typed values ------------------------------------------------------------------------


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _table(value: object, path: KeyPath, where: _Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.fail(path, f"expected a table, got {_kind(value)}")
    # Mappings built in Python may use numbers as keys (PO numbers); files always use text.
    return {str(key): item for key, item in value.items()}


def _list(value: object, path: KeyPath, where: _Where) -> list[Any]:
    if not isinstance(value, list):
        raise where.fail(path, f"expected a list, got {_kind(value)}")
    return value


def _known(table: Mapping[str, Any], allowed: set[str], path: KeyPath, where: _Where) -> None:
    for key in table:
        if key not in allowed:
            raise where.fail(
                path + (key,), f"unknown key (expected one of: {', '.join(sorted(allowed))})"
            )


def _string(value: object, path: KeyPath, where: _Where) -> str:
    if not isinstance(value, str):
        raise where.fail(path, f"expected a string, got {_kind(value)}")
    return value


def _boolean(value: object, path: KeyPath, where: _Where) -> bool:
    if not isinstance(value, bool):
        raise where.fail(path, f"expected true or false, got {_kind(value)}")
    return value


def _integer(
    value: object, path: KeyPath, where: _Where, low: int | None = None, high: int | None = None
) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.fail(path, f"expected an integer, got {_kind(value)}")
    _bounds(value, path, where, low, high)
    return value


def _number(
    value: object, path: KeyPath, where: _Where, low: float | None = None, high: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.fail(path, f"expected a number, got {_kind(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise where.fail(path, "expected a finite number")
    _bounds(value, path, where, low, high)
    return float(value)


def _bounds(
    value: float, path: KeyPath, where: _Where, low: float | None, high: float | None
) -> None:
    if low is not None and value < low:
        raise where.fail(path, f"must be at least {low}, got {value}")
    if high is not None and value > high:
        raise where.fail(path, f"must be at most {high}, got {value}")


def _choice(value: object, kind: Callable[[str], E], path: KeyPath, where: _Where) -> E:
    allowed = [m.value for m in kind]  # type: ignore[attr-defined]
    if not isinstance(value, str) or value not in allowed:
        raise where.fail(path, f"expected one of {', '.join(allowed)}, got {value!r}")
    return kind(value)
