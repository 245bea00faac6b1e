"""The competitor: a plain Playwright-for-Python script that downloads Coupa PO attachments.

This is the script a competent user would write instead of running coupad, kept here so
that `make bench` can measure coupad against it on the same tenant, the same POs and the
same concurrency. It is deliberately *plain*, not crippled:

- one browser (Debian's Chromium at /usr/bin/chromium: Playwright never downloads one here),
  one context, signed in once on Coupa's native form;
- N pages (the concurrency) take PO numbers from one shared queue, each page reused from PO
  to PO;
- on each PO page it waits for the attachment list to render — on this tenant the list's
  container (``#attachment-list``) carries ``aria-busy="true"`` until the page's script has
  rendered it, so the script waits for ``aria-busy="false"``: exact, and at once when the list
  is there (``networkidle`` would add half a second of idle time to every page, and a fixed
  sleep is either too long or wrong);
- links (``a[href*=attachment_file]``, ``a[href*="/attachments/"]``) are fetched with the
  context's own cookies (``context.request.get``), concurrently; click-only attachments
  (an aria-label ending in "file attachment", no href) are clicked under
  ``page.expect_download()`` and saved with ``download.save_as``;
- one folder per PO under ``--out``.

What it does not have — and coupad does: retries with backoff, a journal that survives a crash,
a verdict only on evidence (a list that renders later than expected, or grows, or a page
that is an error page or the sign-in page), requisition files, length and hash checks of every
file, throttling politeness, recycling, a report. A PO that goes wrong is written down as an
error and skipped.

Usage::

    python bench/competitor.py BASE_URL --username U --password-file F --out DIR \\
        [--concurrency 6] [--handshake] PO [PO ...]

It prints one JSON line at the end: wall seconds, POs done and the error of each failed PO.
With ``--handshake`` (for the benchmark) it prints ``ready`` once signed in with its pages
open, waits for a line on stdin before it starts, prints the result, and waits for another
line before it closes the browser — so that the benchmark can read the CPU of its process
tree exactly around the work, as it does for a warm coupad daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from playwright.async_api import BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
LIST_READY = '#attachment-list[aria-busy="false"]'
LINKS = 'a[href*="attachment_file"], a[href*="/attachments/"]'
BUTTONS = '[aria-label$="file attachment"]:not([href])'
TIMEOUT_MS = 60_000


def file_name(disposition: str | None, url: str) -> str:
    """The file name from Content-Disposition (RFC 6266, filename* first), else the URL."""
    if disposition:
        extended = re.search(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", disposition, re.I)
        if extended:
            return _safe(unquote(extended.group(1).strip()))
        plain = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"|filename\s*=\s*([^;]+)',
                          disposition, re.I)
        if plain:
            return _safe(re.sub(r"\\(.)", r"\1", plain.group(1) or plain.group(2).strip()))
    return _safe(unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or "download")


def _safe(name: str) -> str:
    return name.replace("/", "_").replace("\x00", "_").strip() or "download"


async def sign_in(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/sessions/new")
    await page.fill("#user_email", username)
    await page.fill("#user_password", password)
    await page.click("#login_button")
    await page.wait_for_url(lambda url: "/sessions" not in url)


async def fetch_link(context: BrowserContext, url: str, folder: Path) -> None:
    response = await context.request.get(url, timeout=TIMEOUT_MS)
    if not response.ok:
        raise RuntimeError(f"{url}: HTTP {response.status}")
    body = await response.body()
    (folder / file_name(response.headers.get("content-disposition"), url)).write_bytes(body)


async def one_po(page: Page, context: BrowserContext, base: str, po: str, out: Path) -> None:
    digits = po.upper().removeprefix("PO")
    folder = out / f"PO{digits}"
    folder.mkdir(parents=True, exist_ok=True)
    await page.goto(f"{base}/order_headers/{digits}", timeout=TIMEOUT_MS)
    await page.wait_for_selector(LIST_READY, state="attached", timeout=TIMEOUT_MS)
    hrefs = await page.eval_on_selector_all(LINKS, "els => els.map(e => e.href)")
    buttons = page.locator(BUTTONS)

    async def click_all() -> None:  # one download at a time per page: clicks share the page
        for i in range(await buttons.count()):
            async with page.expect_download(timeout=TIMEOUT_MS) as info:
                await buttons.nth(i).click()
            download = await info.value
            await download.save_as(folder / _safe(download.suggested_filename))

    await asyncio.gather(click_all(), *(fetch_link(context, href, folder) for href in hrefs))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    password = Path(args.password_file).read_text(encoding="utf-8").splitlines()[0]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for po in args.pos:
        queue.put_nowait(po)
    errors: dict[str, str] = {}
    done = 0
    seconds: list[float] = []  # per PO, in its page
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        context = await browser.new_context(accept_downloads=True)
        first = await context.new_page()
        await sign_in(first, args.base_url, args.username, password)
        pages = [first] + [await context.new_page() for _ in range(args.concurrency - 1)]

        async def worker(page: Page) -> None:
            nonlocal done
            while True:
                try:
                    po = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                began = time.monotonic()
                try:
                    await one_po(page, context, args.base_url, po, args.out)
                    done += 1
                    seconds.append(time.monotonic() - began)
                except Exception as exc:  # no retries: note it and go on
                    errors[po] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

        if args.handshake:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        started = time.monotonic()
        await asyncio.gather(*(worker(page) for page in pages))
        result = {"pos": len(args.pos), "done": done, "errors": errors,
                  "wall_s": round(time.monotonic() - started, 3),
                  "s_per_po_in_page": round(sum(seconds) / max(1, len(seconds)), 3)}
        if args.handshake:
            print(json.dumps(result), flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        await browser.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("pos", nargs="+", metavar="PO")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--handshake", action="store_true",
                        help="say ready, wait for a line; print the result, wait for a line")
    args = parser.parse_args()
    args.base_url = args.base_url.rstrip("/")
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    if not args.handshake:
        print(json.dumps(result), flush=True)
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
