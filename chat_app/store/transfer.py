"""Export a user's conversations as a self-contained zip, and import one back.

    export_zip(db, blobs, user_key, destination, conversation_id=None) -> int
    import_zip(db, blobs, limits, user_key, source) -> ImportResult

The zip holds `manifest.json` (see manifest.py: every message with its model and generation
settings) and `media/<sha256>` for each attachment's bytes, once per distinct file.

Import checks the whole file before writing anything: its size; every member's name (no
`..`, absolute paths, backslashes, drive letters, nothing but manifest.json and media/<sha>),
count, declared and actual sizes (zip bombs); encryption; the manifest's format, version and
every field; each media file's sha256, size and format. Only then, in one transaction, are
the conversations added to the importing user's account with new ids; a conversation whose
content hash matches one the user already has is skipped and reported. If the write fails,
blob files it created are removed again and the transaction rolls back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from chat_app.store.database import Database
from chat_app.store.errors import ImportRejected, StoreError
from chat_app.store.limits import Limits, human_size
from chat_app.store.manifest import build_manifest, content_hash, media_name, parse_manifest
from chat_app.store.media import SHA256_RE, Blobs, sniff_mime
from chat_app.store.records import ImportResult
from chat_app.store.rows import conversation_record, new_id, owned_conversation, user_id

MANIFEST = "manifest.json"
CHUNK = 1 << 20
_DRIVE_RE = re.compile(r"^[A-Za-z]:")

# ----------------------------------------------------------------------------- export


def _write_zip(out: BinaryIO, conversations: list, blobs: Blobs) -> None:
    available: set[str] = set()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for conversation in conversations:
            for message in conversation.messages:
                for item in message.attachments:
                    if item.removed or item.sha256 in available:
                        continue
                    try:  # images and audio are compressed already: store them as they are
                        archive.write(blobs.path(item.sha256), media_name(item.sha256), zipfile.ZIP_STORED)
                    except FileNotFoundError:  # dropped meanwhile: exported as removed
                        continue
                    available.add(item.sha256)
        manifest = build_manifest(conversations, available, time.time())
        archive.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))


def export_zip(
    db: Database,
    blobs: Blobs,
    user_key: str,
    destination: str | os.PathLike | BinaryIO,
    conversation_id: str | None = None,
) -> int:
    """Write the user's conversations (or one) to `destination`; returns how many."""
    with db.read() as conn:
        if conversation_id is not None:
            found = [owned_conversation(conn, user_key, conversation_id)]
        else:
            found = conn.execute(
                "SELECT c.* FROM conversations c JOIN users u ON "
                "u.id = c.user_id WHERE u.user_key = ? ORDER BY c.created, c.id",
                (user_key,),
            ).fetchall()
        conversations = [conversation_record(conn, row) for row in found]
    if not isinstance(destination, (str, os.PathLike)):
        _write_zip(destination, conversations, blobs)
        return len(conversations)
    final = Path(destination)
    temp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as out:
            _write_zip(out, conversations, blobs)
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    return len(conversations)


# ----------------------------------------------------------------------------- import checks


def _open_zip(source: str | os.PathLike | bytes | BinaryIO, limits: Limits) -> zipfile.ZipFile:
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, source = len(source), io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        try:
            size = os.stat(source).st_size
        except OSError as exc:
            raise ImportRejected(f"the file cannot be read ({exc.strerror}).") from None
    elif not source.seekable():  # a stream: read no more than the limit allows
        data = source.read(limits.max_import_bytes + 1)
        size, source = len(data), io.BytesIO(data)
    else:
        size = source.seek(0, io.SEEK_END) - source.seek(0)
    if size > limits.max_import_bytes:
        raise ImportRejected(
            f"the file is {human_size(size)}; at most {human_size(limits.max_import_bytes)} can be imported."
        )
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ImportRejected("it is not a valid zip file (damaged or of another kind).") from None


def _check_name(name: str) -> None:
    if "\\" in name:
        raise ImportRejected(f"it contains a file named {name[:100]!r} with a backslash.")
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise ImportRejected(f"it contains a file with an absolute path, {name[:100]!r}.")
    if ".." in name.split("/"):
        raise ImportRejected(f"it contains a file named {name[:100]!r} that points outside the archive ('..').")
    if name != MANIFEST and not (name.startswith("media/") and SHA256_RE.fullmatch(name[6:])):
        raise ImportRejected(
            f"it contains an unexpected file, {name[:100]!r} (an export holds only manifest.json and media/<sha256>)."
        )


def _check_members(archive: zipfile.ZipFile, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > limits.max_import_members:
        raise ImportRejected(f"it holds {len(infos):,} files; at most {limits.max_import_members:,} are allowed.")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if info.filename == "media/" and info.is_dir():
            continue
        _check_name(info.filename)
        if info.filename in members:
            raise ImportRejected(f"it holds {info.filename!r} twice.")
        if info.flag_bits & 0x1:
            raise ImportRejected("it is encrypted.")
        limit = limits.max_manifest_bytes if info.filename == MANIFEST else limits.max_attachment_bytes
        if info.file_size > limit:
            raise ImportRejected(
                f"{info.filename!r} unpacks to {human_size(info.file_size)}, more than the {human_size(limit)} allowed."
            )
        total += info.file_size
        if total > limits.max_import_uncompressed_bytes:
            raise ImportRejected(
                f"it unpacks to more than the {human_size(limits.max_import_uncompressed_bytes)} allowed."
            )
        members[info.filename] = info
    if MANIFEST not in members:
        raise ImportRejected("it has no manifest.json, so it is not an export of this app.")
    return members


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes, never more than its declared (already checked) size."""
    left = info.file_size
    try:
        with archive.open(info) as member:
            while chunk := member.read(min(CHUNK, left + 1)):
                left -= len(chunk)
                if left < 0:
                    raise ImportRejected(f"{info.filename!r} is larger than it claims.")
                yield chunk
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ImportRejected(f"{info.filename!r} cannot be unpacked ({exc}).") from None


def _check_media(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], conversations: list[dict[str, Any]]
) -> None:
    """Every attachment's bytes are present, hash to their name and are what they claim."""
    verified: dict[str, tuple[int, str]] = {}  # sha -> (size, sniffed mime)
    for conversation in conversations:
        for message in conversation["messages"]:
            for item in message["attachments"]:
                if item["removed"]:
                    continue
                sha = item["sha256"]
                if sha not in verified:
                    info = members.get(media_name(sha))
                    if info is None:
                        raise ImportRejected(f"the file {media_name(sha)!r} is missing.")
                    digest, size, head = hashlib.sha256(), 0, b""
                    for chunk in _chunks(archive, info):
                        digest.update(chunk)
                        size += len(chunk)
                        head += chunk[: 64 - len(head)]
                    if digest.hexdigest() != sha:
                        raise ImportRejected(
                            f"the bytes of {info.filename!r} do not match its sha256 (the file was changed or damaged)."
                        )
                    try:
                        verified[sha] = (size, sniff_mime(item["kind"], head))
                    except StoreError as exc:
                        raise ImportRejected(f"{info.filename!r}: {exc}") from None
                size, mime = verified[sha]
                if size != item["size"] or not mime.startswith(item["kind"] + "/"):
                    raise ImportRejected(
                        f"the attachment {media_name(sha)!r} is not the "
                        f"{item['kind']} of {item['size']} bytes it claims."
                    )
                item["mime"] = mime


def read_export(
    source: str | os.PathLike | bytes | BinaryIO, limits: Limits
) -> tuple[zipfile.ZipFile, list[dict[str, Any]]]:
    """Open and validate an export; returns the open zip and its checked conversations."""
    archive = _open_zip(source, limits)
    try:
        members = _check_members(archive, limits)
        raw = b"".join(_chunks(archive, members[MANIFEST]))
        conversations = parse_manifest(raw, limits.max_text_chars)
        _check_media(archive, members, conversations)
    except BaseException:
        archive.close()
        raise
    return archive, conversations


# ----------------------------------------------------------------------------- import writes


def _existing_hashes(conn: sqlite3.Connection, uid: int) -> dict[str, str]:
    """content hash -> public id of each conversation the user has."""
    shas: dict[int, list[str]] = {}
    for row in conn.execute(
        "SELECT a.message_id, a.sha256 FROM attachments a JOIN messages m ON m.id = "
        "a.message_id JOIN conversations c ON c.id = m.conversation_id "
        "WHERE c.user_id = ? ORDER BY a.message_id, a.position",
        (uid,),
    ):
        shas.setdefault(row[0], []).append(row[1])
    messages: dict[str, list[tuple]] = {}
    for row in conn.execute(
        "SELECT c.public_id, m.id, m.role, m.text, m.transcript FROM conversations c "
        "LEFT JOIN messages m ON m.conversation_id = c.id WHERE c.user_id = ? "
        "ORDER BY c.id, m.position",
        (uid,),
    ):
        turns = messages.setdefault(row[0], [])
        if row[1] is not None:
            turns.append((row[2], row[3], row[4], shas.get(row[1], [])))
    return {content_hash(turns): public_id for public_id, turns in messages.items()}


def _insert(conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> int:
    return conn.execute(
        f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})", tuple(values.values())
    ).lastrowid


def _insert_conversation(
    conn: sqlite3.Connection, uid: int, conversation: dict[str, Any], store_blob
) -> tuple[str, int, int]:
    public_id = new_id()
    rowid = _insert(
        conn,
        "conversations",
        dict(
            public_id=public_id,
            user_id=uid,
            title=conversation["title"],
            model=conversation["model"],
            settings=conversation["settings"],
            created=conversation["created"],
            updated=conversation["updated"],
        ),
    )
    attachments = 0
    for position, message in enumerate(conversation["messages"]):
        values = {k: v for k, v in message.items() if k != "attachments"}
        message_rowid = _insert(
            conn, "messages", dict(values, public_id=new_id(), conversation_id=rowid, position=position)
        )
        for index, item in enumerate(message["attachments"]):
            if not item["removed"]:
                store_blob(item["sha256"])
            _insert(
                conn,
                "attachments",
                dict(
                    public_id=new_id(),
                    message_id=message_rowid,
                    position=index,
                    kind=item["kind"],
                    mime=item["mime"],
                    size=item["size"],
                    sha256=item["sha256"],
                    created=item["created"],
                    removed=time.time() if item["removed"] else None,
                ),
            )
            attachments += 1
    return public_id, len(conversation["messages"]), attachments


def import_zip(
    db: Database, blobs: Blobs, limits: Limits, user_key: str, source: str | os.PathLike | bytes | BinaryIO
) -> ImportResult:
    """Validate an export, then add its new conversations to the user's account."""
    archive, conversations = read_export(source, limits)
    created: list[str] = []

    def store_blob(sha: str) -> None:
        if blobs.put_stream(_chunks(archive, archive.getinfo(media_name(sha))), sha):
            created.append(sha)

    imported, duplicates, messages, attachments = [], [], 0, 0
    with archive, db.write() as conn:
        try:
            uid = user_id(conn, user_key, create=True)
            known = _existing_hashes(conn, uid)
            for conversation in conversations:
                if conversation["hash"] in known:
                    duplicates.append(known[conversation["hash"]])
                    continue
                public_id, n_messages, n_attachments = _insert_conversation(conn, uid, conversation, store_blob)
                known[conversation["hash"]] = public_id
                imported.append(public_id)
                messages += n_messages
                attachments += n_attachments
        except BaseException:
            for sha in created:  # still inside the transaction: nothing else uses them yet
                blobs.delete(sha)
            raise
    return ImportResult(
        conversations=tuple(imported), duplicates=tuple(duplicates), messages=messages, attachments=attachments
    )
