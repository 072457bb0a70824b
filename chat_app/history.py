"""The sidebar: a person's conversations — list, search, open, new, rename, delete, export,
import. Plain functions over the store (no gradio); every call is scoped by the user's key.

    history = History(store, views, settings)
    history.choices(key)                 -> [(label, conversation_id)], newest first
    history.search(key, "red circle")    -> [(label with snippet, conversation_id)]
    history.open(key, conversation_id)   -> Opened(id, title, messages, feedback, settings) or None
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from chat_app.render import MediaViews, conversation_label, feedback_values, render_messages, search_label
from chat_app.settings import Settings
from chat_app.store import ConversationStore, ImportRejected, NotFound, StoreError

LIST_LIMIT = 200


class HistoryError(Exception):
    """Something the sidebar could not do; str() is shown to the person."""


@dataclass
class Opened:
    id: str
    title: str
    messages: list[dict]  # gr.Chatbot value
    feedback: list[str | None]  # gr.Chatbot feedback_value
    settings: dict = field(default_factory=dict)  # the settings of the last reply, for the panel
    model: str | None = None


class History:
    def __init__(self, store: ConversationStore, views: MediaViews, settings: Settings) -> None:
        self.store = store
        self.views = views
        self.settings = settings

    def choices(self, user_key: str) -> list[tuple[str, str]]:
        return [(conversation_label(c.title), c.id) for c in self.store.list_conversations(user_key, limit=LIST_LIMIT)]

    def search(self, user_key: str, query: str) -> list[tuple[str, str]]:
        """Conversations whose messages match, best first, labelled with the best snippet."""
        if not query.strip():
            return self.choices(user_key)
        seen: dict[str, str] = {}
        for hit in self.store.search(user_key, query, limit=50, highlight=("«", "»")):
            seen.setdefault(hit.conversation_id, search_label(hit))
        return [(label, conversation_id) for conversation_id, label in seen.items()]

    def open(self, user_key: str, conversation_id: str | None) -> Opened | None:
        if not conversation_id:
            return None
        try:
            conversation = self.store.get_conversation(user_key, conversation_id)
        except NotFound:
            return None
        last_reply = next((m for m in reversed(conversation.messages) if m.role == "assistant"), None)
        settings = dict((last_reply.settings if last_reply else None) or conversation.settings or {})
        settings.pop("report", None)
        return Opened(
            conversation.id,
            conversation.title,
            render_messages(conversation.messages, self.views, user_key),
            feedback_values(conversation.messages),
            settings,
            (last_reply.model if last_reply else None) or conversation.model,
        )

    def latest(self, user_key: str) -> Opened | None:
        """The most recently updated conversation (what a reloaded page shows)."""
        found = self.store.list_conversations(user_key, limit=1)
        return self.open(user_key, found[0].id) if found else None

    def rename(self, user_key: str, conversation_id: str | None, title: str) -> None:
        if not conversation_id:
            raise HistoryError("Open a conversation first, then rename it.")
        try:
            self.store.rename_conversation(user_key, conversation_id, title)
        except StoreError as error:
            raise HistoryError(str(error)) from None

    def delete(self, user_key: str, conversation_id: str | None) -> None:
        if not conversation_id:
            raise HistoryError("Nothing to delete: this conversation is not saved yet.")
        try:
            conversation = self.store.get_conversation(user_key, conversation_id)
            self.store.delete_conversation(user_key, conversation_id)
        except StoreError as error:
            raise HistoryError(str(error)) from None
        # Views are only cached copies: one another conversation still shows is made again on demand.
        self.views.forget({a.sha256 for m in conversation.messages for a in m.attachments})

    def export(self, user_key: str, conversation_id: str | None = None) -> Path:
        """A zip of one conversation (or all of them when `conversation_id` is None)."""
        folder = self.settings.scratch("export-")
        if conversation_id:
            try:
                title = self.store.get_conversation(user_key, conversation_id).title
            except NotFound:
                raise HistoryError("That conversation is gone; nothing was exported.") from None
            slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")[:40].lower() or "conversation"
            path = folder / f"{slug}.zip"
        else:
            path = folder / f"conversations-{time.strftime('%Y-%m-%d')}.zip"
        count = self.store.export_zip(user_key, path, conversation_id)
        if count == 0:
            raise HistoryError("There are no conversations to export yet.")
        return path

    def import_zip(self, user_key: str, path: str | Path) -> str:
        """Add the conversations of an export zip; returns a sentence saying what happened."""
        try:
            result = self.store.import_zip(user_key, Path(path))
        except ImportRejected as error:
            raise HistoryError(str(error)) from None
        except StoreError as error:
            raise HistoryError(f"The file was not imported: {error}") from None
        parts = [f"Imported {len(result.conversations)} conversation(s) with {result.messages} message(s)"]
        if result.duplicates:
            parts.append(f"{len(result.duplicates)} already here were skipped")
        return "; ".join(parts) + "."
