"""Files -> tensors: images and audio are decoded and validated here, at the edge of the engine.

A `MediaSource` is a path (str or Path) or the file's contents (bytes). Everything a person
gives us passes through these functions; anything unusable raises `ImageError` or
`AudioError` (both `InputError`) whose message says what was wrong and what to do.

    read_image(source) -> PIL.Image.Image          RGB, EXIF orientation applied, first frame
    image_to_tensor(image, size) -> Tensor          (3, size, size) float32 in [-1, 1], letterboxed
    load_image(source, size) -> Tensor              read_image + image_to_tensor
    read_audio(source, sample_rate=16000) -> Tensor (samples,) float32 mono in [-1, 1]
    log_mel(waveform, sample_rate=16000, n_mels=64, hop_length=160) -> Tensor   (n_mels, frames)
    load_audio_features(source, n_mels=64, hop_length=160, sample_rate=16000) -> Tensor
    describe_source(source) -> str                  "photo.jpg" or "uploaded file (12 kB)"

Limits: MAX_FILE_BYTES per file (checked before reading), MAX_IMAGE_PIXELS per image (checked
from the header before decoding pixels), MAX_AUDIO_SECONDS per clip (checked from the
container's metadata before decoding when it has a duration, and on the decoded samples).
All functions are safe to call from several threads at once.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import torch
import torchaudio
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.types import AudioError, ImageError, InputError, MediaSource

try:  # HEIC/HEIF photos from phones
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is in requirements.txt
    pass

MAX_IMAGE_PIXELS = 40_000_000
MAX_AUDIO_SECONDS = 600
MAX_FILE_BYTES = 200 * 2**20

IMAGE_FORMATS = "JPEG, PNG, WebP, GIF, BMP, HEIC"
AUDIO_FORMATS = "WAV, FLAC, MP3, OGG, Opus, WebM"
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def describe_source(source: MediaSource, kind: str = "file") -> str:
    """A short name for messages: the file name, or "uploaded image (12 kB)" for bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"uploaded {kind} ({_human_size(len(source))})"
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.name or str(path)
    return f"{kind} of type {type(source).__name__}"


def _human_size(n: int) -> str:
    for unit in ("bytes", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.0f} {unit}"
        n /= 1000


def _checked_source(source: MediaSource, error: type[InputError], kind: str) -> bytes | Path:
    """Bytes or an existing, non-empty, not-too-large file path; nothing is read yet."""
    name = describe_source(source, kind)
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = len(source)
        data: bytes | Path = bytes(source)
    elif isinstance(source, (str, Path)):
        data = Path(source)
        try:
            if data.is_dir():
                raise error(f"{name} is a folder, not a file. Choose the {kind} file inside it.")
            size = data.stat().st_size
        except FileNotFoundError:
            raise error(
                f"The {kind} file {str(source)!r} does not exist. Check the path, or upload the file again."
            ) from None
        except OSError as exc:
            raise error(
                f"Could not open {name} ({exc.strerror or exc}). Check that the file exists and can be read."
            ) from None
    else:
        raise error(f"Expected a file path or the file's bytes for the {kind}, got {type(source).__name__}.")
    if size == 0:
        raise error(f"{name} is empty (0 bytes). The upload may have failed; try again.")
    if size > MAX_FILE_BYTES:
        raise error(
            f"{name} is {_human_size(size)}; the limit is {MAX_FILE_BYTES // 2**20} MiB per file. Use a smaller {kind}."
        )
    return data


# ----------------------------------------------------------------------------- images


def read_image(source: MediaSource) -> Image.Image:
    """Decode an image file into an RGB `PIL.Image` (first frame, EXIF orientation applied).

    Transparent areas are composited on white; greyscale, palette, CMYK and 16-bit images
    become 8-bit RGB. Raises `ImageError` for missing, empty, corrupt, unknown or too-large
    images (over MAX_IMAGE_PIXELS, refused from the header before any pixel is decoded).
    """
    name = describe_source(source, "image")
    data = _checked_source(source, ImageError, "image")
    too_large = f"The limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels; resize it and try again."
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            width, height = image.size
            # Pillow's own limit may have been lowered by the application: honour the smaller.
            limit = min(MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS)
            if width * height > limit:
                raise ImageError(
                    f"{name} is too large: {width}x{height} pixels "
                    f"({width * height / 1e6:.0f} megapixels). " + too_large
                )
            image.load()  # full decode inside the try: truncated files fail here
            rgb = _to_rgb(ImageOps.exif_transpose(image))
            return rgb.copy() if rgb is image else rgb  # never hand out a closed image
    except ImageError:
        raise
    # Pillow warns (DecompressionBombWarning) on opening images between its limit (89 MP)
    # and twice it, and raises above that. All of them are over MAX_IMAGE_PIXELS, so the
    # size check above already turns the warning into an error; the warning class is caught
    # for processes run with `-W error`. The global warning filters are left alone:
    # warnings.catch_warnings is not thread-safe before Python 3.14.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name} is too large: its header declares a huge size (a possible decompression bomb). " + too_large
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name} is not an image Pillow can read ({IMAGE_FORMATS}). Try saving it as PNG or JPEG."
        ) from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read: permission denied.") from None
    except MemoryError:
        raise ImageError(f"{name} is too large for the memory available. " + too_large) from None
    except Exception as exc:  # truncated data, broken headers, bad EXIF, unknown mode...
        raise ImageError(
            f"{name} is damaged or incomplete and cannot be decoded ({exc}). "
            "Try opening and saving it again as PNG or JPEG."
        ) from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited on white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # 16/32-bit greyscale
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max(initial=0.0))
        if image.mode == "F" and peak <= 1.0:
            scale = 255.0  # floats in [0, 1]
        else:
            scale = 255.0 / 65535.0 if peak > 255 else 1.0  # 16-bit range, or already 8-bit
        image = Image.fromarray(np.clip(values * scale, 0, 255).round().astype(np.uint8), "L")
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Letterbox a PIL image into a (3, size, size) float32 tensor normalised to [-1, 1].

    The aspect ratio is kept: the image is resized (antialiased) so its longer side is
    `size`, then centred on a square filled with its mean colour. Deterministic.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, not {size!r}")
    if image.mode != "RGB":
        image = _to_rgb(image)
    width, height = image.size
    scale = size / max(width, height)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    # Resizing before padding gives the same picture as pad-then-resize without building a
    # full-resolution square canvas for big photos.
    pixels = TF.pil_to_tensor(image)  # (3, H, W) uint8
    pixels = TF.resize(pixels, [new_h, new_w], antialias=True)  # (3, h, w) uint8
    pixels = TF.to_dtype(pixels, torch.float32, scale=True)  # (3, h, w) in [0, 1]
    fill = pixels.mean(dim=(1, 2), keepdim=True)  # (3, 1, 1) mean colour
    square = fill.expand(3, size, size).clone()  # (3, size, size)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    square[:, top : top + new_h, left : left + new_w] = pixels
    return TF.normalize(square, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])


def load_image(source: MediaSource, size: int) -> torch.Tensor:
    """`read_image` then `image_to_tensor`: a file -> (3, size, size) float32 tensor."""
    return image_to_tensor(read_image(source), size)


# ----------------------------------------------------------------------------- audio


def read_audio(source: MediaSource, sample_rate: int = 16000) -> torch.Tensor:
    """Decode an audio file into a mono float32 waveform of shape (samples,) at `sample_rate`.

    Any container/codec FFmpeg reads (WAV, FLAC, MP3, OGG/Vorbis, OGG/Opus, WebM/Opus as
    recorded by browsers), any rate and channel count: channels are averaged, then resampled.
    Raises `AudioError` for missing, empty, corrupt or non-audio files, files with no audio
    track or zero samples, and clips longer than MAX_AUDIO_SECONDS (refused from the metadata
    before decoding when the container states a duration; decoding never goes past the limit).
    """
    if not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer, not {sample_rate!r}")
    name = describe_source(source, "audio clip")
    data = _checked_source(source, AudioError, "audio clip")
    try:
        from torchcodec.decoders import AudioDecoder
    except Exception as exc:  # torchcodec loads FFmpeg's shared libraries when imported
        raise AudioError(
            f"Audio cannot be decoded on this machine: FFmpeg's libraries are "
            f"missing or unusable ({exc}). Install ffmpeg and restart."
        ) from None
    seconds = MAX_AUDIO_SECONDS
    limit = f"{seconds // 60} minutes" if seconds >= 60 else f"{seconds} s"
    too_long = f"The limit is {limit}; trim the recording or split it into shorter clips."
    no_sound = f"{name} contains no sound (zero samples). Record again, or choose another file."
    try:
        # An absolute path, so FFmpeg never reads a name like "http:x" as a protocol.
        decoder = AudioDecoder(data if isinstance(data, bytes) else str(data.absolute()))
        meta = decoder.metadata
        stated = meta.duration_seconds_from_header or meta.duration_seconds
        # Header durations can be estimates (VBR MP3): refuse early only when clearly over.
        if stated and stated > MAX_AUDIO_SECONDS * 1.05:
            raise AudioError(f"{name} is too long ({stated / 60:.1f} minutes). " + too_long)
        # Decode at most one second past the limit, whatever the metadata said.
        decoded = decoder.get_samples_played_in_range(0.0, MAX_AUDIO_SECONDS + 1.0)
        samples, rate = decoded.data, decoded.sample_rate  # (channels, samples) float32
    except AudioError:
        raise
    except MemoryError:
        raise AudioError(f"{name} needs more memory to decode than is available. " + too_long) from None
    except Exception as exc:  # torchcodec raises RuntimeError/ValueError with FFmpeg's text
        if "audio stream" in str(exc):
            raise AudioError(f"{name} has no audio track. Upload a sound recording ({AUDIO_FORMATS}).") from None
        if "No audio frames" in str(exc):
            raise AudioError(no_sound) from None
        raise AudioError(
            f"{name} is not an audio file that can be decoded: it may be damaged, "
            f"or in a format other than {AUDIO_FORMATS}. Try exporting it as "
            "WAV or MP3."
        ) from None
    if samples.numel() == 0:
        raise AudioError(no_sound)
    if samples.shape[-1] > MAX_AUDIO_SECONDS * rate:
        raise AudioError(f"{name} is too long. " + too_long)
    if not torch.isfinite(samples).all():
        raise AudioError(f"{name} contains invalid samples (NaN or infinity). Export it again as 16-bit WAV.")
    waveform = samples.mean(dim=0)  # (channels, samples) -> (samples,)
    if rate != sample_rate:
        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
    return waveform.clamp(-1.0, 1.0).contiguous()


@functools.lru_cache(maxsize=16)
def _mel_transform(sample_rate: int, n_mels: int, hop_length: int, device: str):
    # One module per parameters and device, never mutated after creation: its forward pass
    # only reads the window and filterbank buffers, so threads may share it.
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=400, win_length=400, hop_length=hop_length, n_mels=n_mels, power=2.0
    )
    return transform.to(device).eval().requires_grad_(False)


def log_mel(waveform: torch.Tensor, sample_rate: int = 16000, n_mels: int = 64, hop_length: int = 160) -> torch.Tensor:
    """Whisper-style log-mel spectrogram of a mono waveform: (samples,) -> (n_mels, frames).

    frames = 1 + max(samples, 400) // hop_length (about 100 per second at the defaults);
    values are log10 power clamped to 8 decades below the clip's peak, mapped by (x + 4) / 4.
    """
    if waveform.dim() != 1:
        raise ValueError(f"log_mel expects a mono waveform of shape (samples,), got {tuple(waveform.shape)}")
    waveform = waveform.float()
    if waveform.numel() < 400:  # shorter than one window: pad with silence to one frame
        waveform = torch.nn.functional.pad(waveform, (0, 400 - waveform.numel()))
    transform = _mel_transform(sample_rate, n_mels, hop_length, str(waveform.device))
    with torch.no_grad():
        power = transform(waveform)  # (n_mels, frames)
    spec = power.clamp(min=1e-10).log10()
    spec = torch.maximum(spec, spec.max() - 8.0)
    return (spec + 4.0) / 4.0


def load_audio_features(
    source: MediaSource, n_mels: int = 64, hop_length: int = 160, sample_rate: int = 16000
) -> torch.Tensor:
    """`read_audio` then `log_mel`: a file -> (n_mels, frames) float32 tensor."""
    return log_mel(read_audio(source, sample_rate), sample_rate, n_mels, hop_length)
