"""A mail's HTML cut down to markup that cannot fetch, run or read anything.

An allow-list over the standard library's HTML parser: known formatting tags keep the
attributes that only describe looks; everything else is dropped — the tags that run, embed
or navigate (script, iframe, object, embed, svg, meta, base, link, form…) together with their
content, unknown tags (Word's ``o:p``) keeping their text. Images survive only as ``data:``
URIs: ``cid:`` references become the mail's own inline images, anything else is replaced by
its alt text. CSS (``<style>`` and ``style=``) loses every ``url()``/``image-set()``/``src()``
that is not ``data:``, and ``@import``; CSS with escapes or legacy script hooks is dropped.
Text and attribute values are escaped again on output, so nothing the parser decoded can
become markup. This is one layer: the document's CSP and the renderer's blocking are others.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from html.parser import HTMLParser

ALLOWED_TAGS = frozenset(
    "a abbr address article aside b bdi bdo big blockquote br caption center cite code col "
    "colgroup dd del dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 header "
    "hr i img ins kbd li main mark ol p pre q s samp section small span strike strong sub sup "
    "table tbody td tfoot th thead tr tt u ul var wbr".split()
)
# Dropped with everything inside them.
DROPPED_WITH_CONTENT = frozenset(
    "script noscript template iframe frame frameset object embed applet svg math video audio "
    "canvas title head-script xml select textarea button form input noembed noframes "
    "portal fencedframe".split()
)
VOID_TAGS = frozenset("area base br col embed hr img input link meta param source track wbr".split())
ALLOWED_ATTRIBUTES = frozenset(
    "align alt border cellpadding cellspacing class color colspan dir face height hspace lang "
    "nowrap rowspan size span start style title type valign vspace width bgcolor".split()
)
SAFE_LINK = re.compile(r"^\s*(https?:|mailto:|#)", re.IGNORECASE)
DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp|bmp);base64,[A-Za-z0-9+/=\s]*$", re.I)
_CSS_FUNCTION = re.compile(r"(?i)(?:-webkit-)?(?:url|image-set|src)\s*\(\s*(['\"]?)([^)]*)\)")
_CSS_FORBIDDEN = re.compile(r"(?i)\\|@import|expression\s*\(|behavior\s*:|-moz-binding|javascript:")


def clean_css(css: str) -> str:
    """CSS without anything that could fetch: non-data ``url()`` and friends become ``none``."""
    if _CSS_FORBIDDEN.search(css):
        return ""

    def replace(match: re.Match[str]) -> str:
        argument = match.group(2).strip().strip("'\"").strip()
        if match.group(0).lower().startswith("url") and DATA_IMAGE.match(argument):
            return match.group(0)
        return "none"

    return _CSS_FUNCTION.sub(replace, css)


def clean_html(markup: str, images: Mapping[str, str]) -> str:
    """``markup`` reduced to safe body content; ``images`` maps content ids to data: URIs."""
    cleaner = _Cleaner(images)
    cleaner.feed(markup)
    cleaner.close()
    return cleaner.result()


class _Cleaner(HTMLParser):
    def __init__(self, images: Mapping[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.images = {key.lower(): value for key, value in images.items()}
        self.out: list[str] = []
        self.skip: list[str] = []  # the dropped elements we are inside
        self.open: list[str] = []  # allowed elements open in the output
        self.in_style = False

    def result(self) -> str:
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self.open))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip:
            if tag == self.skip[-1] or tag in DROPPED_WITH_CONTENT and tag not in VOID_TAGS:
                self.skip.append(tag)
            return
        if tag in DROPPED_WITH_CONTENT:
            if tag not in VOID_TAGS:
                self.skip.append(tag)
            return
        if tag == "style":
            self.in_style = True
            self.out.append("<style>")
            return
        if tag not in ALLOWED_TAGS:
            return  # the tag goes, its text stays
        kept = self.attributes(tag, attrs)
        if kept is None:
            return
        self.out.append(f"<{tag}{kept}>")
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and not self.skip and self.open and self.open[-1] == tag:
            self.handle_endtag(tag)
        elif self.skip and self.skip[-1] == tag and tag not in VOID_TAGS:
            self.skip.pop()

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in self.skip:
                while self.skip.pop() != tag:
                    pass
            return
        if tag == "style" and self.in_style:
            self.in_style = False
            self.out.append("</style>")
            return
        if tag in self.open:
            while True:
                last = self.open.pop()
                self.out.append(f"</{last}>")
                if last == tag:
                    break

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.in_style:
            # Inside <style> the text is CSS, raw: no "</" may end the element early.
            self.out.append(clean_css(data).replace("<", "\\3C "))
            return
        self.out.append(html.escape(data, quote=False))

    def attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> str | None:
        """The kept attributes as markup; None drops the element (an image with no source)."""
        kept: list[tuple[str, str]] = []
        for name, value in attrs:
            value = value or ""
            if name == "style":
                value = clean_css(value)
                if value:
                    kept.append((name, value))
            elif name in ALLOWED_ATTRIBUTES:
                kept.append((name, value))
            elif tag == "a" and name == "href" and SAFE_LINK.match(value):
                kept.append((name, value))
            elif tag == "img" and name == "src":
                source = self.image_source(value)
                if source is not None:
                    kept.append((name, source))
        if tag == "img" and not any(name == "src" for name, _ in kept):
            alt = dict(attrs).get("alt") or ""
            if alt.strip():
                self.out.append(html.escape(f"[{alt.strip()}]", quote=False))
            return None
        return "".join(f' {name}="{html.escape(value, quote=True)}"' for name, value in kept)

    def image_source(self, value: str) -> str | None:
        value = value.strip()
        if value.lower().startswith("cid:"):
            return self.images.get(value[4:].strip().strip("<>").lower())
        if DATA_IMAGE.match(value):
            return value
        return None
