"""8 threads x 100 turns of concurrent writes on a real file: nothing lost, nothing corrupt."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from store_helpers import png

from chat_app.store import ConversationStore

THREADS, TURNS = 8, 100


@pytest.mark.timeout(120)
def test_eight_threads_times_a_hundred_turns(data_dir):
    with ConversationStore(data_dir) as store:
        users = ["ann", "ben"]
        # thread t writes to conversation t % 4, owned by user t % 2: two threads per conversation
        conversations = [store.create_conversation(users[c % 2]).id for c in range(4)]
        writing = threading.Event()
        writing.set()

        def write(t: int) -> None:
            user, conversation = users[t % 2], conversations[t % 4]
            for i in range(TURNS):
                attachments = [("image", None, png(i % 7))] if i % 10 == 0 else []
                store.append_message(user, conversation, "user", f"t{t} question {i} zebra{t}", attachments=attachments)
                reply = store.begin_reply(user, conversation, model="tiny")
                store.finish_reply(user, reply, f"t{t} answer {i}", tokens=i)

        def read() -> int:  # readers run alongside and always see whole turns
            reads = 0
            while writing.is_set():
                for user in users:
                    for summary in store.list_conversations(user):
                        messages = store.get_conversation(user, summary.id).messages
                        assert len({m.id for m in messages}) == len(messages)
                    store.search(user, "question")
                reads += 1
            return reads

        with ThreadPoolExecutor(THREADS + 1) as pool:
            reader = pool.submit(read)
            list(pool.map(write, range(THREADS)))
            writing.clear()
            assert reader.result() > 0

        for c, conversation in enumerate(conversations):
            messages = store.get_conversation(users[c % 2], conversation).messages
            assert len(messages) == 2 * 2 * TURNS
            assert all(m.status == "complete" for m in messages)
            for t in (c, c + 4):  # each thread's turns are all there, in its order
                questions = [m.text for m in messages if m.text.startswith(f"t{t} question")]
                answers = [m.text for m in messages if m.text.startswith(f"t{t} answer")]
                assert questions == [f"t{t} question {i} zebra{t}" for i in range(TURNS)]
                assert answers == [f"t{t} answer {i}" for i in range(TURNS)]
            assert len(store.search(users[c % 2], f"zebra{c}", limit=500)) == TURNS
        assert sum(s.message_count for u in users for s in store.list_conversations(u)) == THREADS * TURNS * 2

    conn = sqlite3.connect(data_dir / "chat.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
        positions = conn.execute(
            "SELECT conversation_id, count(*), min(position), max(position) FROM messages GROUP BY conversation_id"
        ).fetchall()
        assert all(row[1:] == (400, 0, 399) for row in positions)
        assert conn.execute("SELECT count(*) FROM attachments").fetchone()[0] == THREADS * 10
    finally:
        conn.close()
    assert len([p for p in (data_dir / "media").rglob("*") if p.is_file()]) == 7
