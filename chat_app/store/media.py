"""Attachment bytes on disk, content-addressed: `<data_dir>/media/ab/abcdef...` by sha256.

A file's name is its hash, so identical uploads are stored once and no name a user chose
ever reaches the filesystem. Files are written atomically (temp file, fsync, os.replace).

    sniff_mime(kind, data) -> str       the mime type read from the bytes; AttachmentRejected
                                        when they are not a known image/audio format
    read_source(source, limit) -> bytes bytes, or a file path the app was handed (size checked
                                        before reading)
    Blobs(root)                         .path(sha) .exists(sha) .put(data) -> (sha, created)
                                        .put_stream(chunks, sha) .delete(sha) .read(sha)

The store calls put/delete only inside a write transaction, so deciding that a blob is
unreferenced and deleting it cannot race with another writer starting to reference it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from chat_app.store.errors import AttachmentRejected
from chat_app.store.limits import human_size

MediaSource = bytes | bytearray | memoryview | str | os.PathLike
SHA256_RE = re.compile(r"[0-9a-f]{64}")

IMAGE_MIMES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/heic",
    "image/heif",
    "image/avif",
)
AUDIO_MIMES = ("audio/wav", "audio/flac", "audio/ogg", "audio/webm", "audio/mpeg", "audio/aac", "audio/mp4")
_HEIF_BRANDS = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"hevc": "image/heic",
    b"hevx": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
}
_BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if head[8:12] == b"WEBP" else "audio/wav"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "image/bmp"
    if head[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(head[8:12], "audio/mp4")
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # Matroska/WebM, as browsers record
        return "audio/webm"
    if head[:3] == b"ID3":
        return "audio/mpeg"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG frame sync
        return "audio/aac" if head[1] & 0x06 == 0 else "audio/mpeg"
    return None


def sniff_mime(kind: str, data: bytes, declared: str | None = None) -> str:
    """The mime type of `data`, which must be a known format of `kind` ("image" | "audio")."""
    if kind not in ("image", "audio"):
        raise AttachmentRejected(f"Unknown attachment kind {kind!r}: use 'image' or 'audio'.")
    if declared and declared.split("/", 1)[0] != kind:
        raise AttachmentRejected(f"An {kind} attachment cannot have the type {declared!r}.")
    mime = _sniff(bytes(data[:32]))
    if mime is None or not mime.startswith(kind + "/"):
        formats = "PNG, JPEG, GIF, WebP, BMP, HEIC" if kind == "image" else "WAV, FLAC, OGG/Opus, WebM, MP3, AAC, M4A"
        raise AttachmentRejected(f"The {kind} is not in a format the app keeps ({formats}).")
    return mime


def read_source(source: MediaSource, limit: int) -> bytes:
    """The bytes of an attachment given as bytes or as a path the app received an upload at."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            if path.stat().st_size > limit:
                raise AttachmentRejected(
                    f"The file {path.name} is larger than the {human_size(limit)} an attachment may be."
                )
            data = path.read_bytes()
        except OSError as exc:
            raise AttachmentRejected(f"The file {path.name} cannot be read ({exc.strerror}).") from exc
    else:
        raise AttachmentRejected(f"An attachment must be bytes or a file path, not {type(source).__name__}.")
    if not data:
        raise AttachmentRejected("An attachment is empty (0 bytes).")
    if len(data) > limit:
        raise AttachmentRejected(
            f"An attachment of {human_size(len(data))} is larger than the {human_size(limit)} allowed."
        )
    return data


class Blobs:
    """Content-addressed files under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store `data`; returns (sha256, True if this call created the file)."""
        sha = hashlib.sha256(data).hexdigest()
        return sha, self.put_stream([data], sha)

    def put_stream(self, chunks: Iterable[bytes], sha256: str) -> bool:
        """Store the concatenated chunks under `sha256` (verified); True if the file is new."""
        final = self.path(sha256)
        if final.is_file():
            return False
        final.parent.mkdir(exist_ok=True)
        temp = final.parent / f".tmp-{secrets.token_hex(8)}"
        digest = hashlib.sha256()
        try:
            with open(temp, "xb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise ValueError("the bytes written do not match their sha256")
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        return True

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the file itself was synced
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
