"""Durability with real processes: a writer killed with SIGKILL loses no turn it reported
done, its reply in flight comes back "interrupted", and processes can share one database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from chat_app.store import ConversationStore

WRITER = Path(__file__).with_name("crash_writer.py")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def _start(data_dir: Path, user: str, mode: str, turns: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(data_dir), user, mode, str(turns)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(writer: subprocess.Popen, stop) -> list[list[str]]:
    """The writer's output lines, split, up to and including the first for which stop() holds."""
    lines = []
    while True:
        line = writer.stdout.readline()
        if not line:
            writer.wait(10)
            pytest.fail(f"the writer exited early ({writer.returncode}):\n{writer.stderr.read()}")
        lines.append(line.split())
        if stop(lines):
            return lines


def _kill(writer: subprocess.Popen) -> None:
    os.kill(writer.pid, signal.SIGKILL)
    assert writer.wait(10) == -signal.SIGKILL
    writer.stdout.close()
    writer.stderr.close()


def _check_integrity(data_dir: Path) -> None:
    conn = sqlite3.connect(data_dir / "chat.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def _assert_done_turns_kept(store, lines) -> list:
    """Every turn the writer reported done is there, complete; returns all messages."""
    [summary] = store.list_conversations("killed")
    messages = store.get_conversation("killed", summary.id).messages
    by_id = {m.id: m for m in messages}
    done = [line[1:] for line in lines if line[0] == "done"]
    for i, (question, answer) in enumerate(done):
        assert by_id[question].text == f"question killed {i}"
        assert (by_id[answer].text, by_id[answer].status) == (f"answer killed {i}", "complete")
    for message in messages:
        for attachment in message.attachments:
            assert store.read_attachment("killed", attachment.id).startswith(b"\x89PNG")
    return messages


@pytest.mark.timeout(60)
def test_sigkill_mid_stream_loses_nothing_completed(data_dir):
    writer = _start(data_dir, "killed", "stream", 12)
    lines = _read_until(writer, lambda lines: lines[-1][0] == "streaming")
    _kill(writer)
    _check_integrity(data_dir)
    with ConversationStore(data_dir) as store:
        assert store.recovered == 1
        messages = _assert_done_turns_kept(store, lines)
        assert len(messages) == 12 * 2 + 1
        in_flight = messages[-1]
        assert (in_flight.id, in_flight.status, in_flight.text) == (lines[-1][1], "interrupted", "partial answer")
        assert [h.message_id for h in store.search("killed", "partial")] == [in_flight.id]
    with ConversationStore(data_dir) as store:
        assert store.recovered == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("after", [3, 17, 40])
def test_sigkill_at_an_arbitrary_moment(data_dir, after):
    writer = _start(data_dir, "killed", "loop", 0)
    lines = _read_until(writer, lambda lines: sum(line[0] == "done" for line in lines) == after)
    _kill(writer)  # while the writer races on: it is somewhere inside a turn
    _check_integrity(data_dir)
    with ConversationStore(data_dir) as store:
        messages = _assert_done_turns_kept(store, lines)
        assert len(messages) >= 2 * after
        assert not [m for m in messages if m.status == "streaming"]
        assert store.recovered <= 1
        store.collect_garbage()  # a blob written by the killed transaction is an orphan
        _assert_done_turns_kept(store, lines)


@pytest.mark.timeout(60)
def test_processes_share_one_database(data_dir):
    writers = [_start(data_dir, user, "exit", 40) for user in ("p1", "p2", "p3")]
    with ConversationStore(data_dir, recover=False) as store:  # and this process too
        conversation = store.create_conversation("here").id
        for i in range(40):
            store.append_message("here", conversation, "user", f"local {i}")
    for writer in writers:
        out, err = writer.communicate(timeout=50)
        assert writer.returncode == 0, err
    _check_integrity(data_dir)
    with ConversationStore(data_dir) as store:
        for user in ("p1", "p2", "p3"):
            [summary] = store.list_conversations(user)
            messages = store.get_conversation(user, summary.id).messages
            assert [m.text for m in messages[1::2]] == [f"answer {user} {i}" for i in range(40)]
        assert store.list_conversations("here")[0].message_count == 40
