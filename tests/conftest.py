"""Shared test media, made by the test suite itself (no downloaded files).

Every fixture is session-scoped, built on first use into one `media_dir`, and returns a
`Path` (except `speech_text` and `speech_seconds`). Tools: Pillow for images; espeak-ng,
sox and ffmpeg for audio (`apt-get install espeak-ng sox libsox-fmt-all ffmpeg`). A missing
tool fails the test that needs it with a message saying what to install; nothing is skipped
silently. The one exception is `image_heic`, which skips when pillow-heif cannot encode.

Images (128x96 unless noted):
    image_png                 red circle (left) and blue square (right) on white
    image_jpeg_exif_rotated   stored 128x96, left half red / right half blue, EXIF
                              Orientation=6: shown upright it is 96x128 with red on top
    image_rgba_png            64x64, transparent with an opaque green 32x32 square in the middle
    image_gif_animated        32x32, two frames: red then blue
    image_webp, image_bmp     the image_png scene in WebP (lossless) and BMP
    image_greyscale_png       64x48 mode "L" horizontal gradient
    image_16bit_png           64x48 16-bit greyscale ("I;16") gradient over the full range
    image_cmyk_jpeg           32x32 CMYK JPEG of pure cyan
    image_heic                the image_png scene as HEIC (skips if pillow-heif cannot write)
    image_corrupt             the scene as JPEG, cut in half (truncated)
    image_bomb                valid PNG declaring 10000x10000 (100 MP), ~12 kB on disk
    image_over_limit          valid PNG of 7000x6000 (42 MP, over the 40 MP limit), ~5 kB
    not_an_image              a text file named .png
Audio (speech is espeak-ng saying `speech_text`, about `speech_seconds` long):
    speech_wav_16k            16 kHz mono 16-bit WAV
    speech_flac_44k_stereo    44.1 kHz stereo FLAC
    speech_webm_opus_48k      48 kHz Opus in WebM, streamed like MediaRecorder (no duration)
    speech_ogg_opus           48 kHz Opus in Ogg
    speech_mp3                22.05 kHz mono MP3
    speech_ogg_vorbis         22.05 kHz mono Ogg/Vorbis
    tone_wav                  1 s 440 Hz sine, 16 kHz mono
    silence_wav               2 s of digital silence, 16 kHz mono
    empty_wav                 0 bytes
    not_audio_wav             a PNG renamed .wav
    long_audio_flac           20 minutes of silence, 8 kHz mono FLAC (~30 kB)
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import wave
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

SPEECH_TEXT = "the quick brown fox jumps over the lazy dog"


def run_tool(*args: str | Path, stdout=None) -> None:
    """Run an external tool; fail the test with a clear message if it is missing or fails."""
    tool = str(args[0])
    if shutil.which(tool) is None:
        pytest.fail(
            f"{tool} is not installed; the test media need it (apt-get install espeak-ng sox libsox-fmt-all ffmpeg).",
            pytrace=False,
        )
    result = subprocess.run(
        [str(a) for a in args], stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed:\n{result.stderr.decode(errors='replace')}", pytrace=False)


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit black PNG of any size, written without allocating its pixels.

    Rows of zeros compress about 1000:1, so a 100-megapixel image is a few kB on disk:
    exactly what a decompression bomb looks like.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """One folder holding every generated media file of the session."""
    return tmp_path_factory.mktemp("media")


# ----------------------------------------------------------------------------- images


def _scene() -> Image.Image:
    image = Image.new("RGB", (128, 96), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 24, 58, 72), fill=(255, 0, 0))
    draw.rectangle((74, 28, 114, 68), fill=(0, 0, 255))
    return image


@pytest.fixture(scope="session")
def image_png(media_dir) -> Path:
    path = media_dir / "scene.png"
    _scene().save(path)
    return path


@pytest.fixture(scope="session")
def image_jpeg_exif_rotated(media_dir) -> Path:
    path = media_dir / "rotated.jpg"
    image = Image.new("RGB", (128, 96), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 64, 96))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    image.save(path, quality=95, exif=exif)
    return path


@pytest.fixture(scope="session")
def image_rgba_png(media_dir) -> Path:
    path = media_dir / "transparent.png"
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((0, 200, 0, 255), (16, 16, 48, 48))
    image.save(path)
    return path


@pytest.fixture(scope="session")
def image_gif_animated(media_dir) -> Path:
    path = media_dir / "animated.gif"
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    return path


@pytest.fixture(scope="session")
def image_webp(media_dir) -> Path:
    path = media_dir / "scene.webp"
    _scene().save(path, lossless=True)
    return path


@pytest.fixture(scope="session")
def image_bmp(media_dir) -> Path:
    path = media_dir / "scene.bmp"
    _scene().save(path)
    return path


@pytest.fixture(scope="session")
def image_greyscale_png(media_dir) -> Path:
    path = media_dir / "grey.png"
    Image.linear_gradient("L").resize((64, 48)).save(path)
    return path


@pytest.fixture(scope="session")
def image_16bit_png(media_dir) -> Path:
    import numpy as np

    path = media_dir / "grey16.png"
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (48, 1))).save(path)  # mode "I;16"
    return path


@pytest.fixture(scope="session")
def image_cmyk_jpeg(media_dir) -> Path:
    path = media_dir / "cyan_cmyk.jpg"
    Image.new("CMYK", (32, 32), (255, 0, 0, 0)).save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def image_heic(media_dir) -> Path:
    path = media_dir / "scene.heic"
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _scene().save(path, quality=95)
    except Exception as exc:  # not installed, or built without an HEVC encoder
        pytest.skip(f"pillow-heif cannot write HEIC here ({exc}); HEIC decoding is untested")
    return path


@pytest.fixture(scope="session")
def image_corrupt(media_dir) -> Path:
    whole = media_dir / "whole.jpg"
    _scene().save(whole, quality=95)
    path = media_dir / "truncated.jpg"
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="session")
def image_bomb(media_dir) -> Path:
    return write_blank_png(media_dir / "bomb.png", 10_000, 10_000)


@pytest.fixture(scope="session")
def image_over_limit(media_dir) -> Path:
    return write_blank_png(media_dir / "huge.png", 7_000, 6_000)


@pytest.fixture(scope="session")
def not_an_image(media_dir) -> Path:
    path = media_dir / "notes.png"
    path.write_text("This is a shopping list, not a picture.\n")
    return path


# ----------------------------------------------------------------------------- audio


@pytest.fixture(scope="session")
def speech_text() -> str:
    return SPEECH_TEXT


@pytest.fixture(scope="session")
def speech_espeak_wav(media_dir) -> Path:
    """espeak-ng's own output: 22.05 kHz mono 16-bit WAV; the source of the speech files.

    Spoken at 130 words a minute: at espeak's default 175, Whisper tiny.en heard the 16 kHz copy
    as "The quick groundhog stump over the lazy dog." (espeak-ng 1.51+dfsg-10+deb12u2)."""
    path = media_dir / "speech_espeak.wav"
    run_tool("espeak-ng", "-s", "130", "-w", path, SPEECH_TEXT)
    return path


@pytest.fixture(scope="session")
def speech_seconds(speech_espeak_wav) -> float:
    """Duration of the spoken sentence in seconds (the same in every speech_* file)."""
    with wave.open(str(speech_espeak_wav)) as clip:
        return clip.getnframes() / clip.getframerate()


def _ffmpeg(src: Path, dst: Path, *options: str) -> Path:
    run_tool("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", src, *options, dst)
    return dst


@pytest.fixture(scope="session")
def speech_wav_16k(media_dir, speech_espeak_wav) -> Path:
    path = media_dir / "speech_16k.wav"
    run_tool("sox", "-D", speech_espeak_wav, "-r", "16000", "-c", "1", "-b", "16", path)
    return path


@pytest.fixture(scope="session")
def speech_flac_44k_stereo(media_dir, speech_espeak_wav) -> Path:
    path = media_dir / "speech_44k_stereo.flac"
    run_tool("sox", "-D", speech_espeak_wav, "-r", "44100", "-c", "2", path)
    return path


@pytest.fixture(scope="session")
def speech_webm_opus_48k(media_dir, speech_espeak_wav) -> Path:
    """WebM/Opus as MediaRecorder makes it: written to a pipe, so no duration in the header."""
    path = media_dir / "speech_48k.webm"
    with open(path, "wb") as out:
        run_tool(
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            speech_espeak_wav,
            "-ar",
            "48000",
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-f",
            "webm",
            "pipe:1",
            stdout=out,
        )
    return path


@pytest.fixture(scope="session")
def speech_ogg_opus(media_dir, speech_espeak_wav) -> Path:
    return _ffmpeg(speech_espeak_wav, media_dir / "speech.opus", "-ar", "48000", "-c:a", "libopus")


@pytest.fixture(scope="session")
def speech_mp3(media_dir, speech_espeak_wav) -> Path:
    return _ffmpeg(speech_espeak_wav, media_dir / "speech.mp3", "-c:a", "libmp3lame", "-b:a", "64k")


@pytest.fixture(scope="session")
def speech_ogg_vorbis(media_dir, speech_espeak_wav) -> Path:
    return _ffmpeg(speech_espeak_wav, media_dir / "speech.ogg", "-c:a", "libvorbis")


@pytest.fixture(scope="session")
def tone_wav(media_dir) -> Path:
    path = media_dir / "tone_440hz.wav"
    run_tool("sox", "-D", "-n", "-r", "16000", "-c", "1", "-b", "16", path, "synth", "1", "sine", "440")
    return path


@pytest.fixture(scope="session")
def silence_wav(media_dir) -> Path:
    path = media_dir / "silence.wav"
    run_tool("sox", "-D", "-n", "-r", "16000", "-c", "1", "-b", "16", path, "trim", "0", "2")
    return path


@pytest.fixture(scope="session")
def empty_wav(media_dir) -> Path:
    path = media_dir / "empty.wav"
    path.write_bytes(b"")
    return path


@pytest.fixture(scope="session")
def not_audio_wav(media_dir, image_png) -> Path:
    path = media_dir / "picture.wav"
    shutil.copyfile(image_png, path)
    return path


@pytest.fixture(scope="session")
def long_audio_flac(media_dir) -> Path:
    """20 minutes (1200 s): twice MAX_AUDIO_SECONDS. Silence at 8 kHz: small and made in <1 s."""
    path = media_dir / "twenty_minutes.flac"
    run_tool("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", path, "trim", "0", "1200")
    return path


def pytest_collection_modifyitems(config, items):
    """Browser tests (headless Chromium) are slow tests too: the fast lane `-m "not slow"` leaves them to CI."""
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
