"""Imports that must be refused with a clear sentence, leaving the store exactly as it was."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from store_helpers import png, snapshot, wav

from chat_app.store import ConversationStore, ImportRejected, Limits, transfer

SHA_PNG = hashlib.sha256(png(5)).hexdigest()


def _manifest(**changes) -> dict:
    attachment = {
        "kind": "image",
        "mime": "image/png",
        "size": len(png(5)),
        "sha256": SHA_PNG,
        "created": 1.0,
        "removed": False,
        "file": f"media/{SHA_PNG}",
    }
    message = {
        "role": "user",
        "text": "smuggled",
        "transcript": None,
        "status": "complete",
        "model": None,
        "settings": None,
        "latency_ms": None,
        "tokens": None,
        "feedback": None,
        "created": 1.0,
        "attachments": [attachment],
    }
    manifest = {
        "format": "multimodal-chat-export",
        "version": 1,
        "exported_at": 2.0,
        "conversations": [
            {
                "id": "x",
                "title": "t",
                "model": None,
                "settings": {},
                "created": 1.0,
                "updated": 1.0,
                "messages": [message],
            }
        ],
    }
    for path, value in changes.items():  # "conversations.0.messages.0.role"="wizard"
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[int(key) if key.isdigit() else key]
        node[int(last) if last.isdigit() else last] = value
    return manifest


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _export(manifest: dict | None = None, media: dict[str, bytes] | None = None, **extra) -> bytes:
    members = {"manifest.json": json.dumps(manifest or _manifest()).encode()}
    members.update({f"media/{SHA_PNG}": png(5)} if media is None else media)
    members.update(extra)
    return _zip(members)


@pytest.fixture
def filled(data_dir):
    """A store holding alice's data, and its state before the bad import."""
    with ConversationStore(
        data_dir,
        limits=Limits(
            max_import_bytes=50_000,
            max_attachment_bytes=20_000,
            max_import_uncompressed_bytes=60_000,
            max_manifest_bytes=30_000,
        ),
    ) as store:
        conversation = store.create_conversation("alice").id
        store.append_message("alice", conversation, "user", "hi", attachments=[("image", None, png(1))])
        yield store, snapshot(data_dir)


def test_a_good_export_is_accepted(filled):
    store, _ = filled
    assert len(store.import_zip("bob", _export()).conversations) == 1


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(_manifest()))
        archive.writestr(f"media/{SHA_PNG}", b"\x00" * 5_000_000)  # ~5 kB packed
    return buffer.getvalue()


def _truncated() -> bytes:
    whole = _export()
    return whole[: len(whole) // 2]


def _encrypted() -> bytes:
    """A zip whose manifest is flagged as encrypted (in both of its headers)."""
    data = bytearray(_export())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    return bytes(data)


def _noise(seed: int, size: int) -> bytes:
    """Incompressible bytes."""
    blocks = [hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(size // 32 + 1)]
    return b"".join(blocks)[:size]


def _tampered_crc() -> bytes:
    data = bytearray(
        _zip({"manifest.json": json.dumps(_manifest()).encode(), f"media/{SHA_PNG}": png(5)}, zipfile.ZIP_STORED)
    )
    start = data.index(png(5))
    data[start + 20] ^= 0xFF  # flip a byte inside the stored PNG
    return bytes(data)


BAD = {
    "not a zip": (lambda: b"this is not a zip file at all", "not a valid zip"),
    "empty file": (lambda: b"", "not a valid zip"),
    "truncated zip": (_truncated, "not a valid zip"),
    "parent dir": (lambda: _export(**{"../evil.txt": b"x"}), "outside the archive"),
    "nested parent dir": (lambda: _export(**{"media/../../evil": b"x"}), "outside the archive"),
    "absolute path": (lambda: _export(**{"/etc/cron.d/evil": b"x"}), "absolute path"),
    "drive letter": (lambda: _export(**{"C:/evil": b"x"}), "absolute path"),
    "backslash": (lambda: _export(**{"media\\..\\evil": b"x"}), "backslash"),
    "unexpected file": (lambda: _export(**{"notes.txt": b"x"}), "unexpected file"),
    "no manifest": (lambda: _zip({f"media/{SHA_PNG}": png(5)}), "no manifest"),
    "oversize zip": (
        lambda: _export(media={f"media/{c * 64}": _noise(i, 17_000) for i, c in enumerate("abc")}),
        "at most 50.0 kB",
    ),
    "oversize member": (lambda: _export(media={f"media/{SHA_PNG}": b"\x00" * 25_000}), "more than the"),
    "zip bomb": (_bomb, "more than the"),
    "oversize total": (
        lambda: _export(media={f"media/{c * 64}": b"\x00" * 19_000 for c in "abcd"}),
        "unpacks to more than",
    ),
    "encrypted": (_encrypted, "encrypted"),
    "damaged member": (_tampered_crc, "cannot be unpacked"),
    "invalid json": (lambda: _zip({"manifest.json": b"{not json"}), "not valid JSON"),
    "other format": (lambda: _export(_manifest(format="something-else")), "not an export"),
    "newer version": (lambda: _export(_manifest(version=2)), "newer version"),
    "unknown version": (lambda: _export(_manifest(version="1")), "version '1' is unknown"),
    "no version": (lambda: _export(_manifest(version=None)), "is unknown"),
    "hash mismatch": (lambda: _export(media={f"media/{SHA_PNG}": png(6)}), "do not match"),
    "missing media": (lambda: _export(media={}), "is missing"),
    "size lie": (lambda: _export(_manifest(**{"conversations.0.messages.0.attachments.0.size": 3})), "it claims"),
    "wrong kind": (
        lambda: _export(_manifest(**{"conversations.0.messages.0.attachments.0.kind": "audio"})),
        "not in a format",
    ),
    "bad sha": (
        lambda: _export(_manifest(**{"conversations.0.messages.0.attachments.0.sha256": "../../x"})),
        "64 lowercase hex",
    ),
    "bad file": (
        lambda: _export(_manifest(**{"conversations.0.messages.0.attachments.0.file": "/etc/passwd"})),
        r"\.file must be",
    ),
    "bad role": (
        lambda: _export(_manifest(**{"conversations.0.messages.0.role": "wizard"})),
        r"conversations\[0\]\.messages\[0\]\.role must be one of",
    ),
    "bad text": (lambda: _export(_manifest(**{"conversations.0.messages.0.text": 5})), "must be a string"),
    "bad created": (lambda: _export(_manifest(**{"conversations.0.created": "yesterday"})), "must be a number"),
    "bad messages": (lambda: _export(_manifest(**{"conversations.0.messages": {}})), "must be a list"),
    "bad settings": (lambda: _export(_manifest(**{"conversations.0.settings": [1]})), "must be an object"),
    "second conversation bad": (
        lambda: _export(
            {**_manifest(), "conversations": [_manifest()["conversations"][0], {"messages": [{"role": "user"}]}]}
        ),
        r"conversations\[1\]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_imports_are_refused_and_change_nothing(filled, data_dir, case):
    store, before = filled
    make, message = BAD[case]
    with pytest.raises(ImportRejected, match=message) as error:
        store.import_zip("alice", make())
    text = str(error.value)
    assert text.startswith("The export file was not imported: ")
    assert text.endswith("Nothing was changed.")
    assert snapshot(data_dir) == before
    assert not [p for p in data_dir.rglob("*") if ".tmp" in p.name or "evil" in p.name]


def test_a_failure_while_writing_rolls_everything_back(filled, data_dir, monkeypatch):
    store, before = filled
    second = _manifest()
    second["conversations"].append(
        {
            **second["conversations"][0],
            "messages": [
                {
                    **second["conversations"][0]["messages"][0],
                    "text": "another",
                    "attachments": [
                        {
                            "kind": "audio",
                            "mime": "audio/wav",
                            "size": len(wav(5)),
                            "removed": False,
                            "sha256": hashlib.sha256(wav(5)).hexdigest(),
                            "created": 1.0,
                            "file": f"media/{hashlib.sha256(wav(5)).hexdigest()}",
                        }
                    ],
                }
            ],
        }
    )
    media = {f"media/{SHA_PNG}": png(5), f"media/{hashlib.sha256(wav(5)).hexdigest()}": wav(5)}
    real, calls = transfer._insert_conversation, []

    def fail_on_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(transfer, "_insert_conversation", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        store.import_zip("alice", _export(second, media))
    assert snapshot(data_dir) == before  # the first conversation and its blob are gone too


def test_import_reads_paths_and_file_objects(filled, tmp_path):
    store, _ = filled
    path = tmp_path / "in.zip"
    path.write_bytes(_export())
    assert len(store.import_zip("bob", path).conversations) == 1
    assert store.import_zip("carol", io.BytesIO(_export())).messages == 1

    class Stream(io.RawIOBase):  # a non-seekable upload stream
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            return self.data.readinto(buffer)

    assert store.import_zip("dave", Stream(_export())).messages == 1
    with pytest.raises(ImportRejected, match="at most"):
        store.import_zip("dave", Stream(b"x" * 60_000))
    with pytest.raises(ImportRejected, match="cannot be read"):
        store.import_zip("bob", tmp_path / "missing.zip")
