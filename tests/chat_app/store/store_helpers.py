"""Small, valid media made with the standard library, and a snapshot of a store's state."""

from __future__ import annotations

import io
import sqlite3
import struct
import wave
import zlib
from pathlib import Path


def png(seed: int = 0, size: int = 4) -> bytes:
    """A valid size x size greyscale PNG whose pixels (and so bytes) depend on `seed`."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes((seed * 31 + x * 7 + y) % 256 for x in range(size)) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav(seed: int = 0, frames: int = 1600) -> bytes:
    """A valid 16 kHz mono 16-bit WAV (0.1 s) whose samples depend on `seed`."""
    out = io.BytesIO()
    with wave.open(out, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(16000)
        clip.writeframes(b"".join(struct.pack("<h", (seed * 97 + i * 13) % 20000 - 10000) for i in range(frames)))
    return out.getvalue()


def snapshot(data_dir: Path) -> tuple[list[str], list[tuple[str, bytes]]]:
    """Everything a store holds: a dump of its database and every file under media/."""
    conn = sqlite3.connect(data_dir / "chat.db")
    try:
        dump = list(conn.iterdump())
    finally:
        conn.close()
    media = data_dir / "media"
    files = sorted((str(p.relative_to(media)), p.read_bytes()) for p in media.rglob("*") if p.is_file())
    return dump, files
