"""Deterministic attachment bytes: any downloaded file can be checked against its seed.

A file is a sequence of 64 KiB chunks. Chunk ``k`` is one pseudo-random block derived from the
attachment's seed, with ``k`` written into its first eight bytes, so that a truncated,
reordered or duplicated chunk changes the sha256. Files of 50 MB stream without ever being
held in memory; only the 64 KiB block is cached.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator

CHUNK = 64 * 1024
PDF_HEADER = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


@functools.lru_cache(maxsize=256)
def _block(seed: str) -> bytes:
    return random.Random(f"coupad-sim:{seed}").randbytes(CHUNK)


def chunks(seed: str, size: int, *, pdf: bool = False, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """Yield the file's bytes in pieces of at most ``chunk_size``."""
    block = _block(seed)
    offset = 0
    while offset < size:
        index, start = divmod(offset, CHUNK)
        piece = index.to_bytes(8, "big") + block[8:]
        if index == 0 and pdf:
            piece = PDF_HEADER + piece[len(PDF_HEADER) :]
        end = min(CHUNK, start + chunk_size, start + size - offset)
        data = piece[start:end]
        offset += len(data)
        yield data


def content(seed: str, size: int, *, pdf: bool = False) -> bytes:
    """The whole file in memory; for tests and small files only."""
    return b"".join(chunks(seed, size, pdf=pdf))


@functools.lru_cache(maxsize=4096)
def sha256(seed: str, size: int, *, pdf: bool = False) -> str:
    """The hex sha256 of the file, computed once per (seed, size, kind)."""
    digest = hashlib.sha256()
    for piece in chunks(seed, size, pdf=pdf):
        digest.update(piece)
    return digest.hexdigest()
