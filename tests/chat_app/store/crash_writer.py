"""A store client run as a separate process by the crash and multi-process tests.

    python crash_writer.py DATA_DIR USER MODE N

Writes N completed turns (a user message, then a reply streamed with begin/update/finish),
printing "done <user message id> <reply id>" once finish_reply has returned, then:
    stream   begins one more reply, checkpoints "partial answer", prints
             "streaming <reply id>" and sleeps until killed
    loop     keeps writing turns (printing "begin <id>" and "done ...") until killed
    exit     closes the store and exits (opens with recover=False, like a replica would)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from store_helpers import png  # noqa: E402  (this file's folder is on sys.path)

from chat_app.store import ConversationStore  # noqa: E402


def turn(store: ConversationStore, user: str, conversation: str, i: int) -> None:
    attachments = [("image", None, png(i))] if i % 5 == 0 else []
    message = store.append_message(user, conversation, "user", f"question {user} {i}", attachments=attachments)
    reply = store.begin_reply(user, conversation, model="tiny")
    print("begin", reply, flush=True)
    store.update_reply(user, reply, f"answer {user}")
    store.finish_reply(user, reply, f"answer {user} {i}", latency_ms=1.0, tokens=3)
    print("done", message.id, reply, flush=True)


def main(data_dir: str, user: str, mode: str, count: str) -> None:
    store = ConversationStore(data_dir, recover=mode != "exit")
    conversation = store.create_conversation(user).id
    for i in range(int(count)):
        turn(store, user, conversation, i)
    if mode == "stream":
        reply = store.begin_reply(user, conversation)
        store.update_reply(user, reply, "partial answer")
        print("streaming", reply, flush=True)
        time.sleep(120)
    elif mode == "loop":
        i = int(count)
        while True:
            turn(store, user, conversation, i)
            i += 1
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
