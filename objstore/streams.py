"""Small stream helpers shared by drivers and the library."""

from __future__ import annotations

from typing import BinaryIO


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes unless EOF comes first (``read`` may return less)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
