"""Media files: formats recognised from their bytes (real files), content-addressed writes."""

from __future__ import annotations

import hashlib

import pytest

from chat_app.store import AttachmentRejected
from chat_app.store.media import Blobs, sniff_mime

IMAGES = {
    "image_png": "image/png",
    "image_jpeg_exif_rotated": "image/jpeg",
    "image_gif_animated": "image/gif",
    "image_webp": "image/webp",
    "image_bmp": "image/bmp",
    "image_cmyk_jpeg": "image/jpeg",
    "image_heic": "image/heic",
}
AUDIO = {
    "speech_wav_16k": "audio/wav",
    "speech_flac_44k_stereo": "audio/flac",
    "speech_webm_opus_48k": "audio/webm",
    "speech_ogg_opus": "audio/ogg",
    "speech_mp3": "audio/mpeg",
    "speech_ogg_vorbis": "audio/ogg",
}


@pytest.mark.parametrize("fixture", sorted(IMAGES))
def test_real_images_are_recognised(request, fixture):
    data = request.getfixturevalue(fixture).read_bytes()
    assert sniff_mime("image", data) == IMAGES[fixture]
    with pytest.raises(AttachmentRejected):
        sniff_mime("audio", data)


@pytest.mark.parametrize("fixture", sorted(AUDIO))
def test_real_audio_is_recognised(request, fixture):
    data = request.getfixturevalue(fixture).read_bytes()
    assert sniff_mime("audio", data) == AUDIO[fixture]
    with pytest.raises(AttachmentRejected):
        sniff_mime("image", data)


@pytest.mark.parametrize(
    "fixture, kind", [("not_an_image", "image"), ("not_audio_wav", "audio"), ("empty_wav", "audio")]
)
def test_impostors_are_rejected(request, fixture, kind):
    with pytest.raises(AttachmentRejected, match="not in a format"):
        sniff_mime(kind, request.getfixturevalue(fixture).read_bytes())


def test_real_media_round_trip_through_the_store(store, image_jpeg_exif_rotated, speech_webm_opus_48k):
    conversation = store.create_conversation("u").id
    message = store.append_message(
        "u",
        conversation,
        "user",
        attachments=[
            ("image", "image/jpeg", image_jpeg_exif_rotated),
            ("audio", "audio/webm;codecs=opus", speech_webm_opus_48k),
        ],
    )
    image, audio = message.attachments
    assert store.read_attachment("u", image.id) == image_jpeg_exif_rotated.read_bytes()
    assert store.read_attachment("u", audio.id) == speech_webm_opus_48k.read_bytes()
    assert (image.mime, audio.mime) == ("image/jpeg", "audio/webm")


def test_blobs_are_named_by_hash_and_written_once(tmp_path):
    blobs = Blobs(tmp_path)
    sha, created = blobs.put(b"some bytes")
    assert sha == hashlib.sha256(b"some bytes").hexdigest() and created
    assert blobs.path(sha) == tmp_path / sha[:2] / sha
    assert blobs.put(b"some bytes") == (sha, False)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [sha]
    for bad in ("../../etc/passwd", "AB" * 32, sha[:-1]):
        with pytest.raises(ValueError):
            blobs.path(bad)


def test_a_stream_that_does_not_match_its_hash_leaves_nothing(tmp_path):
    blobs = Blobs(tmp_path)
    with pytest.raises(ValueError, match="do not match"):
        blobs.put_stream([b"these ", b"bytes"], hashlib.sha256(b"other bytes").hexdigest())
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
