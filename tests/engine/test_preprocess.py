"""engine.preprocess on real files made by conftest.py: formats, limits, errors, features."""

from __future__ import annotations

import struct
import threading
import wave

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from engine import preprocess
from engine.preprocess import (
    describe_source,
    image_to_tensor,
    load_audio_features,
    load_image,
    log_mel,
    read_audio,
    read_image,
)
from engine.types import AudioError, ImageError, InputError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def close(pixel, colour, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def write_wav(path, channels: np.ndarray, rate: int):
    """(channels, samples) float in [-1, 1] -> 16-bit PCM WAV."""
    frames = (np.clip(channels.T, -1, 1) * 32767).round().astype("<i2")  # (samples, channels)
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(channels.shape[0])
        clip.setsampwidth(2)
        clip.setframerate(rate)
        clip.writeframes(frames.tobytes())
    return path


def write_float_wav(path, samples: np.ndarray, rate: int = 16000):
    """Mono 32-bit IEEE float WAV (the `wave` module only writes integer PCM)."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


# ----------------------------------------------------------------------------- images

IMAGE_FIXTURES = [
    "image_png",
    "image_jpeg_exif_rotated",
    "image_rgba_png",
    "image_gif_animated",
    "image_webp",
    "image_bmp",
    "image_greyscale_png",
    "image_16bit_png",
    "image_cmyk_jpeg",
    "image_heic",
]


@pytest.mark.parametrize("fixture", IMAGE_FIXTURES)
def test_every_image_format_becomes_a_normalised_tensor(fixture, request):
    path = request.getfixturevalue(fixture)
    image = read_image(path)
    assert image.mode == "RGB"
    tensor = load_image(path, 32)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0


@pytest.mark.parametrize("fixture", ["image_png", "image_webp", "image_bmp", "image_heic"])
def test_scene_colours_survive_decoding(fixture, request):
    image = read_image(request.getfixturevalue(fixture))
    assert image.size == (128, 96)
    assert close(image.getpixel((34, 48)), RED)  # circle centre
    assert close(image.getpixel((94, 48)), BLUE)  # square centre
    assert close(image.getpixel((2, 2)), WHITE)


def test_exif_orientation_is_applied(image_jpeg_exif_rotated):
    with Image.open(image_jpeg_exif_rotated) as raw:
        assert raw.size == (128, 96) and raw.getexif()[0x0112] == 6
    image = read_image(image_jpeg_exif_rotated)
    assert image.size == (96, 128)  # portrait once rotated 90 degrees clockwise
    assert close(image.getpixel((48, 10)), RED)  # stored left half is now on top
    assert close(image.getpixel((48, 118)), BLUE)


def test_transparency_is_composited_on_white(image_rgba_png):
    image = read_image(image_rgba_png)
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((32, 32)) == (0, 200, 0)


def test_gif_gives_its_first_frame(image_gif_animated):
    image = read_image(image_gif_animated)
    assert close(image.getpixel((16, 16)), RED, tolerance=5)


def test_greyscale_16bit_and_cmyk_become_rgb(image_greyscale_png, image_16bit_png, image_cmyk_jpeg):
    grey = np.asarray(read_image(image_greyscale_png))  # (H, W, 3)
    assert grey.shape == (48, 64, 3) and (grey[..., 0] == grey[..., 2]).all()
    deep = np.asarray(read_image(image_16bit_png))  # 16-bit ramp scaled, not clipped to white
    assert deep[0, 0, 0] == 0 and deep[0, -1, 0] == 255 and 100 < deep[0, 32, 0] < 160
    assert close(read_image(image_cmyk_jpeg).getpixel((16, 16)), (0, 255, 255))


def test_letterbox_keeps_aspect_and_pads_with_mean_colour(image_png):
    image = read_image(image_png)  # 128x96 -> 64x48 centred in 64x64: 8 rows of padding each side
    tensor = image_to_tensor(image, 64)
    assert torch.equal(tensor, image_to_tensor(image, 64))  # deterministic
    pad = tensor[:, :8, :]  # (3, 8, 64)
    assert torch.allclose(pad, pad[:, :1, :1].expand_as(pad))  # one flat colour
    assert torch.allclose(pad[:, 0, 0], tensor[:, 8:56, :].mean(dim=(1, 2)), atol=1e-3)
    assert torch.allclose(tensor[:, 10, 1], torch.ones(3), atol=0.02)  # white corner -> ~1
    assert tensor[0, 32, 16] > 0.9 and tensor[2, 32, 16] < -0.9  # red circle
    assert image_to_tensor(Image.new("L", (1, 500), 128), 16).shape == (3, 16, 16)


def test_image_bytes_decode_like_the_file(image_png, image_heic):
    for path in (image_png, image_heic):
        assert torch.equal(load_image(path.read_bytes(), 32), load_image(path, 32))


@pytest.mark.parametrize(
    "fixture, words",
    [
        ("image_corrupt", ["damaged", "PNG or JPEG"]),
        pytest.param(
            "image_bomb",
            ["too large", "40 megapixels"],
            marks=pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
        ),
        pytest.param(
            "image_bomb",
            ["too large", "decompression bomb"],
            id="bomb-warning-as-error",
            marks=pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning"),
        ),
        ("image_over_limit", ["too large", "42 megapixels", "resize"]),
        ("not_an_image", ["not an image", "PNG or JPEG"]),
    ],
)
def test_bad_images_are_refused_with_a_helpful_message(fixture, words, request):
    with pytest.raises(ImageError) as caught:
        read_image(request.getfixturevalue(fixture))
    assert isinstance(caught.value, InputError)
    for word in words:
        assert word in str(caught.value)


def test_oversized_images_are_refused_before_decoding(image_over_limit, monkeypatch):
    def decode(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(ImageError, match="too large"):
        read_image(image_over_limit)


def test_pillows_own_bomb_error_is_translated(image_png, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 128x96 is over twice this
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(image_png)


def test_missing_empty_folder_and_huge_sources_are_refused(tmp_path, image_png, monkeypatch):
    (tmp_path / "empty.png").write_bytes(b"")
    cases = [
        (tmp_path / "nope.jpg", "does not exist"),
        (tmp_path / "empty.png", "empty"),
        (b"", "empty"),
        (tmp_path, "folder"),
        (str(tmp_path / "nope.jpg"), "does not exist"),
    ]
    for source, words in cases:
        with pytest.raises(ImageError, match=words):
            read_image(source)
    monkeypatch.setattr(preprocess, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageError, match="limit"):
        read_image(image_png)
    with pytest.raises(AudioError, match="limit"):
        read_audio(image_png.read_bytes())


def test_describe_source():
    assert describe_source("/photos/photo.jpg") == "photo.jpg"
    assert describe_source(b"x" * 12_000, "image") == "uploaded image (12 kB)"
    assert describe_source(b"abc") == "uploaded file (3 bytes)"


# ----------------------------------------------------------------------------- audio

SPEECH_FIXTURES = [
    "speech_wav_16k",
    "speech_flac_44k_stereo",
    "speech_webm_opus_48k",
    "speech_ogg_opus",
    "speech_mp3",
    "speech_ogg_vorbis",
]


@pytest.mark.parametrize("fixture", SPEECH_FIXTURES)
def test_every_audio_format_becomes_16k_mono(fixture, request, speech_seconds):
    waveform = read_audio(request.getfixturevalue(fixture))
    assert waveform.dim() == 1 and waveform.dtype == torch.float32
    assert waveform.abs().max() <= 1.0 and waveform.abs().max() > 0.05
    assert waveform.numel() / 16000 == pytest.approx(speech_seconds, rel=0.05)


def test_audio_bytes_decode_like_the_file(speech_webm_opus_48k, speech_wav_16k):
    for path in (speech_webm_opus_48k, speech_wav_16k):
        assert torch.allclose(read_audio(path.read_bytes()), read_audio(path))
    features = load_audio_features(speech_wav_16k.read_bytes(), n_mels=32)
    assert torch.equal(features, load_audio_features(speech_wav_16k, n_mels=32))


def test_channels_are_averaged_and_rate_converted(tmp_path, tone_wav):
    t = np.arange(8000) / 8000
    left = 0.8 * np.sin(2 * np.pi * 440 * t)
    path = write_wav(tmp_path / "stereo_8k.wav", np.stack([left, np.zeros_like(left)]), 8000)
    waveform = read_audio(path)  # (16000,): 1 s, mean of tone and silence
    assert waveform.shape == (16000,)
    assert waveform.abs().max() == pytest.approx(0.4, abs=0.03)
    spectrum = torch.fft.rfft(waveform).abs()  # 1 Hz per bin over 1 s
    assert abs(int(spectrum.argmax()) - 440) <= 2
    assert read_audio(tone_wav, sample_rate=8000).shape == (8000,)


def test_long_audio_is_refused_from_metadata_without_decoding(long_audio_flac, monkeypatch):
    from torchcodec.decoders import AudioDecoder

    def decode(*args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(AudioDecoder, "get_samples_played_in_range", decode)
    for source in (long_audio_flac, long_audio_flac.read_bytes()):
        with pytest.raises(AudioError, match=r"too long \(20.0 minutes\). The limit is 10 minutes"):
            read_audio(source)


def test_long_audio_without_a_stated_duration_is_refused_after_decoding(speech_webm_opus_48k, monkeypatch):
    monkeypatch.setattr(preprocess, "MAX_AUDIO_SECONDS", 1)  # the webm states no duration
    with pytest.raises(AudioError, match="too long. The limit is 1 s"):
        read_audio(speech_webm_opus_48k)


def test_bad_audio_is_refused_with_a_helpful_message(
    tmp_path, empty_wav, not_audio_wav, speech_flac_44k_stereo, speech_wav_16k
):
    text = tmp_path / "notes.wav"
    text.write_text("not a recording\n" * 20)
    cut_header = tmp_path / "cut_header.wav"
    cut_header.write_bytes(speech_wav_16k.read_bytes()[:30])
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(speech_flac_44k_stereo.read_bytes()[:20_000])
    no_frames = write_wav(tmp_path / "no_frames.wav", np.zeros((1, 0)), 16000)
    nan = np.sin(np.arange(16000) / 10)
    nan[100] = np.nan
    cases = [
        (empty_wav, "empty"),
        (b"", "empty"),
        (not_audio_wav, "no audio track"),
        (text, "not an audio file"),
        (cut_header, "not an audio file"),
        (truncated, "damaged"),
        (no_frames, "no sound"),
        (tmp_path / "nope.wav", "does not exist"),
        (tmp_path, "folder"),
        (write_float_wav(tmp_path / "nan.wav", nan), "NaN"),
    ]
    for source, words in cases:
        with pytest.raises(AudioError, match=words):
            read_audio(source)


# ----------------------------------------------------------------------------- log-mel


def test_log_mel_shape_and_range(speech_wav_16k, speech_seconds):
    waveform = read_audio(speech_wav_16k)
    features = log_mel(waveform)
    assert features.shape == (64, 1 + waveform.numel() // 160)
    assert features.shape[1] == pytest.approx(speech_seconds * 100, rel=0.05)
    assert torch.isfinite(features).all()
    assert features.max() - features.min() <= 2.0 + 1e-6  # 8 decades below the peak, / 4
    assert load_audio_features(speech_wav_16k, n_mels=80, hop_length=320).shape[0] == 80


def test_log_mel_of_silence_and_tiny_clips_is_finite(silence_wav):
    waveform = read_audio(silence_wav)
    assert waveform.shape == (32000,) and not waveform.any()  # digital silence
    silence = log_mel(waveform)
    assert silence.shape == (64, 201) and torch.isfinite(silence).all()
    for samples in (0, 1, 100, 399):
        features = log_mel(torch.zeros(samples))
        assert features.shape[0] == 64 and features.shape[1] >= 1 and torch.isfinite(features).all()
    with pytest.raises(ValueError, match="mono"):
        log_mel(torch.zeros(2, 1000))


def test_log_mel_is_thread_safe(tone_wav):
    waveform = read_audio(tone_wav)
    expected = log_mel(waveform, n_mels=40)
    results = [None] * 8

    def work(i):
        results[i] = log_mel(waveform, n_mels=40)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(result, expected) for result in results)
