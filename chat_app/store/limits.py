"""How much the store accepts; one frozen dataclass so tests and deployments can tighten it."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class Limits:
    max_attachment_bytes: int = 200 * MiB  # one image or audio file (engine's MAX_FILE_BYTES)
    max_text_chars: int = 1_000_000  # one message's text or transcript
    max_import_bytes: int = 2048 * MiB  # an export zip as uploaded
    max_import_uncompressed_bytes: int = 4096 * MiB  # all members of a zip, unpacked
    max_manifest_bytes: int = 256 * MiB  # manifest.json, unpacked
    max_import_members: int = 100_000  # files inside one zip


def human_size(size: float) -> str:
    """12 bytes, 3.4 kB, 5.6 MiB: for messages to people."""
    if size < 1000:
        return f"{int(size)} bytes"
    if size < MiB:
        return f"{size / 1000:.1f} kB"
    return f"{size / MiB:.1f} MiB"
