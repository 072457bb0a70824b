"""Conversation store: durable, per-user, searchable chat history with its images and audio.

SQLite by default (a file in the data dir, WAL, foreign keys, numbered migrations); media
content-addressed under <data_dir>/media. Never imports torch or gradio.

    with ConversationStore("data") as store:                 # or database_url="sqlite:///..."
        store.ensure_user(key) -> User
        store.create_conversation(key, title=None, model=None, settings=None)
            -> ConversationSummary
        store.list_conversations(key, limit=100, offset=0) -> list[ConversationSummary]
        store.get_conversation(key, conversation_id) -> Conversation  (messages, attachments)
        store.rename_conversation(key, conversation_id, title)
        store.delete_conversation(key, conversation_id)

        store.append_message(key, conversation_id, role, text="", *, transcript=None,
                             attachments=[(kind, mime or None, bytes or path)],
                             status="complete", model=None, settings=None) -> Message
        store.begin_reply(key, conversation_id, model=None, settings=None) -> message_id
        store.update_reply(key, message_id, partial_text)          # optional checkpoints
        store.finish_reply(key, message_id, text, status="complete", *, latency_ms=None,
                           tokens=None, attachments=()) -> Message
        store.get_message(key, message_id) -> Message
        store.set_feedback(key, message_id, "like" | "dislike" | None)
        store.truncate_after(key, message_id) -> int     # undo: drop the later messages
        store.delete_from(key, message_id) -> int        # regenerate/edit: drop it and later
        store.attachment_path(key, attachment_id) -> Path; store.read_attachment(...) -> bytes

        store.search(key, query, limit=20, highlight=("**", "**")) -> list[SearchHit]
        store.export_zip(key, path_or_file, conversation_id=None) -> int
        store.import_zip(key, path_or_bytes_or_file) -> ImportResult
        store.drop_media_older_than(days, user_key=None) -> int
        store.delete_user_data(key) -> bool
        store.collect_garbage() -> int

`key` is the user's key (auth username or per-browser id); every call is scoped by it and
an id owned by another user raises NotFound exactly like an unknown one. Settings may be a
mapping or a dataclass (GenerationConfig). Errors (all StoreError) carry a sentence for
people: NotFound, InvalidInput, AttachmentRejected, ImportRejected, SchemaTooNew,
MediaRemoved. All methods are safe to call from many threads.
"""

from chat_app.store.errors import (
    AttachmentRejected,
    ImportRejected,
    InvalidInput,
    MediaRemoved,
    NotFound,
    SchemaTooNew,
    StoreError,
)
from chat_app.store.limits import Limits
from chat_app.store.records import Attachment, Conversation, ConversationSummary, ImportResult, Message, SearchHit, User
from chat_app.store.store import ConversationStore

__all__ = [
    "ConversationStore",
    "Limits",
    "User",
    "Conversation",
    "ConversationSummary",
    "Message",
    "Attachment",
    "SearchHit",
    "ImportResult",
    "StoreError",
    "NotFound",
    "InvalidInput",
    "AttachmentRejected",
    "ImportRejected",
    "SchemaTooNew",
    "MediaRemoved",
]
