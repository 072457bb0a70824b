"""Files people attach, checked at the edge of the app before anything is stored.

    check_file(path, limit_bytes) -> Attachment      # raises Rejected

Each file is read once, its kind (image or audio) is taken from its bytes (never from its
name), images are fully decoded with Pillow (truncated files, decompression bombs and
over-large pictures are refused here), and audio must be a container the engine decodes.
Every refusal is a `Rejected` whose text is shown in the chat.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from chat_app.store.errors import AttachmentRejected
from chat_app.store.media import sniff_mime

try:  # HEIC/HEIF photos from phones (pillow-heif is in requirements.txt)
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover
    pass

MAX_IMAGE_PIXELS = 40_000_000  # the engine's limit (engine.preprocess.MAX_IMAGE_PIXELS)
IMAGE_FORMATS = "JPEG, PNG, WebP, GIF, BMP or HEIC"
AUDIO_FORMATS = "WAV, FLAC, MP3, OGG/Opus or WebM"
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
              "image/bmp": ".bmp", "image/heic": ".heic", "image/heif": ".heif", "image/avif": ".avif",
              "audio/wav": ".wav", "audio/flac": ".flac", "audio/ogg": ".ogg", "audio/webm": ".webm",
              "audio/mpeg": ".mp3", "audio/aac": ".aac", "audio/mp4": ".m4a"}


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
    """Decode the whole picture with Pillow; refuse what the engine would refuse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise Rejected(f"{name} is {width}×{height} pixels "
                                   f"({width * height / 1e6:.0f} megapixels); pictures may have at most "
                                   f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. Resize it and attach it again.")
                image.load()
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Rejected(f"{name} declares an enormous picture (a decompression bomb); it was not sent.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise Rejected(f"{name} looks like an image but cannot be read: it is damaged or cut short. "
                       "Save it again or attach another picture.") from None


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
        raise Rejected(f"{name} is {human_size(size)}; files may be at most {human_size(limit_bytes)}. "
                       "Attach a smaller file.")
    data = path.read_bytes()
    for kind in ("image", "audio"):
        try:
            mime = sniff_mime(kind, data)
        except AttachmentRejected:
            continue
        if kind == "image":
            check_image(data, name)
        return Attachment(kind, mime, data, name)
    raise Rejected(f"{name} is not a file this app understands. Attach pictures ({IMAGE_FORMATS}) "
                   f"or sound ({AUDIO_FORMATS}).")

