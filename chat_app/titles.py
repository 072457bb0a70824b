"""Conversation titles that tell conversations apart.

The store names a conversation after its first message ("What do you see?"); asked four times
about four pictures, the list would show the same title four times. Once the first reply is
in, a title another of the person's conversations already has gets what this one is about:

    tell_apart(store, user_key, conversation_id, reply_text, observations)
    # "What do you see?" → "What do you see? — “HELLO”" (the text read in the picture),
    #   or "What do you see? — A red circle on the left" (the reply's first words),
    #   or "What do you see? — red, blue" (the picture's colours), or finally "… (2)"

A title the person gave (rename) is theirs: this only runs after the first reply.
"""

from __future__ import annotations

import re

from chat_app.store import ConversationStore, StoreError

HINT_CHARS = 40
LIST_LIMIT = 200  # the conversations compared with (the sidebar shows as many)
_MARKUP = re.compile(r"[*_`#>\[\]]+")


def shorten(text: str, limit: int = HINT_CHARS) -> str:
    """The first sentence of `text`, on one line, cut at a word within `limit` characters."""
    words = " ".join(_MARKUP.sub("", text).split())
    sentence = re.split(r"(?<=[.!?])\s", words, maxsplit=1)[0].rstrip(" .!?,;:")
    if len(sentence) <= limit:
        return sentence
    return sentence[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"


def observed(observations, name: str) -> list[str]:
    """The values of one tool ("text", "colors") in observation lines like
    "image 1: text: EXIT; faces: 0; colors: red" (empty or "none" left out)."""
    found = []
    for line in observations or ():
        for part in str(line).split(";"):
            label, _, value = part.strip().rpartition(": ")
            if label.endswith(name) and value.strip() and value.strip() != "none":
                found.append(value.strip())
    return found


def hints(reply_text: str, observations) -> list[str]:
    """What could tell this conversation apart, most telling first."""
    read = observed(observations, "text")
    colors = observed(observations, "colors")
    candidates = [
        f"“{shorten(' | '.join(read), 30)}”" if read else "",
        shorten(reply_text or ""),
        shorten(colors[0]) if colors else "",
    ]
    return [c for c in candidates if c and c != "“”"]


def tell_apart(
    store: ConversationStore, user_key: str, conversation_id: str, reply_text: str, observations
) -> str | None:
    """Rename the conversation if another of this person's has its title; the new title, or None."""
    try:
        listed = store.list_conversations(user_key, limit=LIST_LIMIT)
    except StoreError:
        return None
    mine = next((c for c in listed if c.id == conversation_id), None)
    others = {c.title for c in listed if c.id != conversation_id}
    if mine is None or mine.title not in others:
        return None
    title = next((t for t in (f"{mine.title} — {h}" for h in hints(reply_text, observations)) if t not in others), None)
    if title is None:
        number = 2
        while f"{mine.title} ({number})" in others:
            number += 1
        title = f"{mine.title} ({number})"
    try:
        store.rename_conversation(user_key, conversation_id, title)
    except StoreError:
        return None
    return title
