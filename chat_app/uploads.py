"""Files people attach, checked at the edge of the app before anything is stored.

    check_file(path, limit_bytes) -> Attachment      # raises Rejected

Each file is read once, its kind (image or audio) is taken from its bytes (never from its
name), images are fully decoded by the engine's own reader (truncated files, decompression
bombs and over-large pictures are refused here), and audio must be a container the engine
decodes.
Every refusal is a `Rejected` whose text is shown in the chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chat_app.store.errors import AttachmentRejected
from chat_app.store.media import sniff_mime
from engine.preprocess import describe_source, read_image
from engine.types import ImageError

IMAGE_FORMATS = "JPEG, PNG, WebP, GIF, BMP or HEIC"
AUDIO_FORMATS = "WAV, FLAC, MP3, OGG/Opus or WebM"
EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/avif": ".avif",
    "audio/wav": ".wav",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/webm": ".webm",
    "audio/mpeg": ".mp3",
    "audio/aac": ".aac",
    "audio/mp4": ".m4a",
}


class Rejected(Exception):
    """Input the app will not send to the model; str() is shown to the person in the chat."""


@dataclass(frozen=True)
class Attachment:
    kind: str  # "image" | "audio"
    mime: str
    data: bytes
    name: str  # the uploaded file's name, for messages only

    def as_store_tuple(self) -> tuple[str, str, bytes]:
        return self.kind, self.mime, self.data


def human_size(size: float) -> str:
    if size < 1000:
        return f"{int(size)} bytes"
    if size < 2**20:
        return f"{size / 1000:.0f} kB"
    return f"{size / 2**20:.1f} MB"


def display_name(path: str | Path) -> str:
    """The name a person gave the file (Gradio keeps it as the last path component)."""
    name = Path(path).name
    return name if len(name) <= 60 else name[:28] + "…" + name[-28:]


def check_image(data: bytes, name: str) -> None:
    """Decode the whole picture the way the engine will (`engine.preprocess.read_image`), so
    what the engine would refuse (damaged, cut short, a decompression bomb, too many pixels)
    is refused here, before anything is stored."""
    try:
        read_image(data)
    except ImageError as error:
        # the engine names bytes "uploaded image (12 kB)"; the person knows the file by its name
        raise Rejected(str(error).replace(describe_source(data, "image"), name, 1)) from None


def check_file(path: str | Path, limit_bytes: int) -> Attachment:
    name = display_name(path)
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise Rejected(f"{name} could not be received; attach it again.") from None
    if size == 0:
        raise Rejected(f"{name} is empty (0 bytes).")
    if size > limit_bytes:
        raise Rejected(
            f"{name} is {human_size(size)}; files may be at most {human_size(limit_bytes)}. Attach a smaller file."
        )
    data = path.read_bytes()
    for kind in ("image", "audio"):
        try:
            mime = sniff_mime(kind, data)
        except AttachmentRejected:
            continue
        if kind == "image":
            check_image(data, name)
        return Attachment(kind, mime, data, name)
    raise Rejected(
        f"{name} is not a file this app understands. Attach pictures ({IMAGE_FORMATS}) or sound ({AUDIO_FORMATS})."
    )
