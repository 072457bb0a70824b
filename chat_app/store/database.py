"""Connections to the store's database: the one place that knows which engine is behind it.

The location is one setting, a SQLAlchemy-style URL, so that another engine (PostgreSQL, to
serve several app replicas) can be added here later without touching the rest:

    sqlite:////abs/path/chat.db     an absolute path (four slashes)
    sqlite:///relative/chat.db      relative to the working directory
    sqlite:///:memory:  or  sqlite://   a private in-memory database (tests)
    /abs/path/chat.db               a bare path is accepted too

    db = Database(url)
    with db.write() as conn: ...    BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception)
    with db.read() as conn: ...     one consistent snapshot (a deferred transaction)
    db.close()

Files are opened with foreign_keys=ON, a busy timeout, synchronous=FULL (a committed turn
survives a crash and a power cut); WAL is switched on by the migrations, after the schema
version was checked. Connections are pooled, one per concurrent caller; writers inside one
process queue on a lock instead of spinning on SQLite's busy handler. An in-memory database
has a single connection guarded by a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from chat_app.store.errors import StoreError

BUSY_TIMEOUT_S = 30.0
MEMORY = ":memory:"


def sqlite_path(url: str | Path) -> str:
    """The file path (or ":memory:") a database URL points at; raises StoreError otherwise."""
    text = str(url)
    if "://" not in text:
        return text or MEMORY
    scheme, rest = text.split("://", 1)
    if scheme != "sqlite":
        raise StoreError(
            f"Database URLs starting with {scheme}:// are not supported yet; use sqlite:///path/to/chat.db."
        )
    if rest in ("", "/", "/" + MEMORY):
        return MEMORY
    if not rest.startswith("/"):
        raise StoreError(
            f"The database URL {text!r} is malformed; use sqlite:///relative.db or sqlite:////absolute/path.db."
        )
    return unquote(rest[1:].split("?", 1)[0])


class Database:
    """A pool of SQLite connections to one database, with read and write transactions."""

    def __init__(self, url: str | Path) -> None:
        self.path = sqlite_path(url)
        self.in_memory = self.path == MEMORY
        self._write_lock = threading.RLock() if self.in_memory else threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False
        self._memory_opened = False
        if not self.in_memory and not Path(self.path).parent.is_dir():
            raise StoreError(f"The folder for the database {self.path} does not exist.")

    def describe(self) -> str:
        return "in memory" if self.in_memory else f"at {self.path}"

    def _connect(self) -> sqlite3.Connection:
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"Cannot open the database {self.describe()}: {exc}.") from exc
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            if self._closed:
                raise StoreError("The conversation store is closed.")
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            if self.in_memory and self._memory_opened:  # a second one would be another database
                raise StoreError("Transactions on an in-memory store cannot be nested.")
            conn = self._connect()
            self._memory_opened = self.in_memory
        try:
            yield conn
        finally:
            if conn.in_transaction:  # only after a failed COMMIT; never reuse it dirty
                conn.rollback()
            with self._pool_lock:
                if self._closed:
                    conn.close()
                else:
                    self._pool.append(conn)

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite itself rolls back after some errors
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: other writers (threads or processes) wait until it ends."""
        with self._write_lock, self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        if self.in_memory:  # one shared connection: reads queue like writes
            with self._write_lock, self._transaction("BEGIN") as conn:
                yield conn
        else:
            with self._transaction("BEGIN") as conn:
                yield conn

    def enable_wal(self) -> None:
        """Switch a file database to write-ahead logging (persistent; a no-op in memory)."""
        if not self.in_memory:
            with self._connection() as conn:  # cannot run inside a transaction
                conn.execute("PRAGMA journal_mode = WAL")

    def close(self) -> None:
        """Close every connection (idle ones now, busy ones when their transaction ends)."""
        with self._write_lock, self._pool_lock:  # waits for a running write to finish
            self._closed = True
            idle, self._pool = self._pool, []
        for conn in idle:
            conn.close()
