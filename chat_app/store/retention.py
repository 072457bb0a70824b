"""Forgetting: deleting blobs nobody references, dropping old media, erasing a user.

    shas_under(conn, where, params) -> set[str]        blobs of the attachments a query selects
    collect_blobs(db, blobs, candidates) -> int        delete those no live attachment uses
    drop_media_older_than(db, blobs, days, user_key=None) -> int
    delete_user_data(db, blobs, user_key) -> bool
    collect_garbage(db, blobs, grace_s) -> int         sweep every unreferenced file

A blob is *live* while at least one attachment row that was not dropped names its sha256;
the same bytes uploaded by two users are one file, kept until neither needs it. Blob files
are deleted only inside a write transaction, after the rows that used them were committed,
so a concurrent writer cannot start using a file while it is being deleted. A crash between
the two steps leaves an orphan file, which collect_garbage() removes later.
"""

from __future__ import annotations

import sqlite3
import time

from chat_app.store.database import Database
from chat_app.store.media import SHA256_RE, Blobs
from chat_app.store.rows import user_id

DAY_S = 86_400.0


def shas_under(conn: sqlite3.Connection, where: str, params: tuple) -> set[str]:
    """sha256 of the attachments of the messages matching `where` (over messages m,
    conversations c, users u)."""
    rows = conn.execute(
        "SELECT DISTINCT a.sha256 FROM attachments a JOIN messages m ON m.id = a.message_id "
        "JOIN conversations c ON c.id = m.conversation_id JOIN users u ON u.id = c.user_id "
        f"WHERE {where}",
        params,
    )
    return {row[0] for row in rows}


def _is_live(conn: sqlite3.Connection, sha256: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM attachments WHERE sha256 = ? AND removed IS NULL LIMIT 1", (sha256,)).fetchone()
        is not None
    )


def collect_blobs(db: Database, blobs: Blobs, candidates: set[str]) -> int:
    """Delete the candidate blob files that no live attachment uses; returns how many."""
    if not candidates:
        return 0
    deleted = 0
    with db.write() as conn:  # holds writers off while deciding and deleting
        for sha in sorted(candidates):
            if not _is_live(conn, sha) and blobs.exists(sha):
                blobs.delete(sha)
                deleted += 1
    return deleted


def drop_media_older_than(db: Database, blobs: Blobs, days: float, user_key: str | None = None) -> int:
    """Mark the attachments of messages older than `days` removed and delete their bytes
    (unless a newer attachment still uses them). Message text and transcripts stay.
    Applies to every user, or to one when `user_key` is given. Returns attachments dropped."""
    cutoff = time.time() - days * DAY_S
    where, params = "m.created < ? AND a.removed IS NULL", (cutoff,)
    if user_key is not None:
        where, params = where + " AND u.user_key = ?", (cutoff, user_key)
    with db.write() as conn:
        shas = shas_under(conn, where, params)
        dropped = conn.execute(
            "UPDATE attachments SET removed = ? WHERE id IN (SELECT a.id FROM attachments a "
            "JOIN messages m ON m.id = a.message_id JOIN conversations c "
            "ON c.id = m.conversation_id JOIN users u ON u.id = c.user_id "
            f"WHERE {where})",
            (time.time(),) + params,
        ).rowcount
    collect_blobs(db, blobs, shas)
    return dropped


def delete_user_data(db: Database, blobs: Blobs, user_key: str) -> bool:
    """Erase a user: their row, conversations, messages, attachments, search index entries
    and every blob no other user's attachment uses. Returns False if there was no such user."""
    with db.write() as conn:
        uid = user_id(conn, user_key)
        if uid is None:
            return False
        shas = shas_under(conn, "u.id = ?", (uid,))
        conn.execute("DELETE FROM users WHERE id = ?", (uid,))  # cascades to everything
    collect_blobs(db, blobs, shas)
    return True


def collect_garbage(db: Database, blobs: Blobs, grace_s: float = 3600.0) -> int:
    """Delete blob files no live attachment uses, and temp files older than `grace_s`
    (left by a crash mid-write). Returns the number of files deleted."""
    deleted, cutoff = 0, time.time() - grace_s
    for path in blobs.root.glob("*/*"):
        if path.name.startswith(".tmp-"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                deleted += 1
    orphans = {p.name for p in blobs.root.glob("*/*") if SHA256_RE.fullmatch(p.name)}
    return deleted + collect_blobs(db, blobs, orphans)
