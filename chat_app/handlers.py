"""What happens when someone sends, stops, regenerates, edits or undoes: plain Python over the
store and the backends, so it is tested without a browser. `chat_app/events.py` wires these
to Gradio events; nothing here imports gradio or torch.

    service = ChatService(store, {"builtin:small": backend}, settings)
    for update in service.send(user_key, conversation_id, "What is this?", ["cat.jpg"], Options(),
                               run_key=session):
        show(update.messages)          # the whole chat, the reply growing at the end
    service.stop(session)              # from another thread: the reply ends "interrupted"

One reply, end to end: the conversation is loaded from the store (once a turn) → the input
is checked (text length, files, guest limits) → audio is transcribed → the user's message is
stored → `chat_app.reply.Replier` streams the backend's reply, speaks it when spoken replies
are on and saves it as it grows (a checkpoint each second) → it ends "complete",
"interrupted" (stop, closed tab; exactly the text that was shown) or "error". Bad input
never reaches the store: it comes back as the update's `notice`, which the page shows in its
own notice under the chat (never as a chat bubble, where it would read as the model's words).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from chat_app.history import History
from chat_app.rate_limit import RateLimiter
from chat_app.render import (
    MediaViews,
    TurnReport,
    file_part,
    live_reply,
    render_messages,
    safe_markdown,
    text_part,
    turn_report,
)
from chat_app.reply import Replier, ReplyTurn, engine_conversation
from chat_app.runs import Runs
from chat_app.settings import Settings
from chat_app.speech import Speech
from chat_app.store import ConversationStore, Message, NotFound, StoreError
from chat_app.updates import EMPTY_BOX, ChatUpdate, Options
from chat_app.uploads import EXTENSIONS, Attachment, Rejected, check_file
from engine.backends.base import Sampling
from engine.types import InputError

FALLBACK_SAMPLING = Sampling(temperature=0.7, top_p=0.95)  # for models that say nothing

__all__ = ["EMPTY_BOX", "ChatService", "ChatUpdate", "Options", "engine_conversation"]


class FilesRefused(Rejected):
    """Some attached files were refused; `box` keeps the text and the files that passed."""

    def __init__(self, message: str, box: dict) -> None:
        super().__init__(message)
        self.box = box


class ChatService:
    """Turns (send, regenerate, edit, undo, stop, feedback) over one store and some backends."""

    def __init__(
        self, store: ConversationStore, backends: Mapping[str, object], settings: Settings, speech: Speech | None = None
    ) -> None:
        if not backends:
            raise ValueError("ChatService needs at least one backend")
        self.store = store
        self.backends = dict(backends)
        self.settings = settings
        self.speech = speech if speech is not None else Speech()
        self.views = MediaViews(store, settings.view_dir)
        self.views.sweep()
        settings.purge_scratch(max_age_s=24 * 3600)
        self.history = History(store, self.views, settings)
        self.limiter = RateLimiter(settings.guest.turns_per_hour) if settings.guest else None
        self.runs = Runs()
        self.replier = Replier(store, self.views, self.speech, self.runs, settings)

    # ------------------------------------------------------------------------- basics

    def backend(self, name: str | None):
        if not name:
            return next(iter(self.backends.values()))
        try:
            return self.backends[name]
        except KeyError:
            raise Rejected(
                f"There is no model called {name!r} here; choose one of {', '.join(self.backends)}."
            ) from None

    def default_options(self, model: str | None = None) -> Options:
        """The settings panel's start for `model` (default: the first): the app's settings, with
        temperature and top-p from the model's own decoding defaults where the settings leave them."""
        s = self.settings
        name = model if model in self.backends else next(iter(self.backends))
        own = self.backends[name].sampling or FALLBACK_SAMPLING
        return Options(
            name,
            s.system_prompt,
            own.temperature if s.temperature is None else s.temperature,
            own.top_p if s.top_p is None else s.top_p,
            s.max_new_tokens,
            s.spoken_replies,
        )

    def _load(self, user_key: str, conversation_id: str | None) -> tuple[Message, ...] | None:
        """The stored conversation's messages (None for none or one not found): a turn's one load."""
        if not conversation_id:
            return None
        try:
            return self.store.get_conversation(user_key, conversation_id).messages
        except NotFound:
            return None

    def _chat(self, user_key: str, messages) -> list[dict]:
        return render_messages(messages or (), self.views, user_key)

    def view(self, user_key: str, conversation_id: str | None) -> list[dict]:
        """The stored conversation as chat messages ([] for none or one not found)."""
        return self._chat(user_key, self._load(user_key, conversation_id))

    def report(self, user_key: str, conversation_id: str | None, index: int | None = None) -> TurnReport:
        """What the model saw and heard for the reply at chat index `index` (default: the last)."""
        return turn_report(self._load(user_key, conversation_id) or (), index, self.views, user_key)

    def _rejected(
        self, user_key: str, conversation_id: str | None, messages, message: str, box: dict | None = None
    ) -> ChatUpdate:
        """The last update of a refused turn: the stored chat (unchanged) and the notice."""
        return ChatUpdate(
            conversation_id,
            self._chat(user_key, messages),
            box=box,
            notice=message,
            done=True,
            report=turn_report(messages or (), None, self.views, user_key),
        )

    # ------------------------------------------------------------------------- checks

    def _check_text(self, text: str, has_files: bool) -> None:
        if not text.strip() and not has_files:
            raise Rejected("Nothing to send: type a message, or attach a picture or a sound.")
        limit = self.settings.max_message_chars
        if len(text) > limit:
            raise Rejected(
                f"That message is {len(text):,} characters long; the limit is {limit:,}. "
                "Shorten it or send it in parts."
            )

    def _check_files(self, text: str, files: list[str]) -> list[Attachment]:
        if len(files) > self.settings.max_files_per_turn:
            raise Rejected(
                f"That is {len(files)} files; one message may carry at most {self.settings.max_files_per_turn}."
            )
        checked, problems = [], []
        for path in files:
            try:
                checked.append((path, check_file(path, self.settings.upload_limit_bytes)))
            except Rejected as problem:
                problems.append(str(problem))
        if problems:  # the box keeps what was typed; refused files are taken out of it
            raise FilesRefused(" ".join(problems), {"text": text, "files": [path for path, _ in checked]})
        return [attachment for _, attachment in checked]

    def _check_backend(self, backend, attachments: list[Attachment]) -> None:
        kinds = {a.kind for a in attachments}
        if "image" in kinds and not backend.capabilities.takes_images:
            raise Rejected(f"The model {backend.name} cannot see pictures; choose another model or send text.")
        if "audio" in kinds and not backend.capabilities.audio and self.speech.asr_problem:
            raise Rejected(
                f"The model {backend.name} cannot hear sound and speech recognition is off ({self.speech.asr_problem})."
            )

    def _check_reply(self, user_key: str, options: Options, attachments: list[Attachment] = ()):
        """The model (can it take these attachments?), the settings and the guest limit; returns the backend."""
        backend = self.backend(options.model)
        self._check_backend(backend, attachments)
        options.generation()
        if self.limiter:
            self.limiter.check(user_key)
        return backend

    # ------------------------------------------------------------------------- runs (stop)

    def stop(self, run_key: str, wait_s: float = 5.0) -> bool:
        """Stop the replies of this browser session; True if one was running. Waits until they
        are stored (status "interrupted") and the engine has freed their cache."""
        return self.runs.stop(run_key, wait_s)

    def running(self, run_key: str) -> bool:
        return self.runs.running(run_key)

    # ------------------------------------------------------------------------- turns

    def send(
        self,
        user_key: str,
        conversation_id: str | None,
        text: str,
        files: list,
        options: Options,
        run_key: str,
        recorded: tuple = (),
    ) -> Iterator[ChatUpdate]:
        """A new user message (text and/or files) and the reply to it. `recorded`: the files
        that come from the microphone (push-to-talk, hands-free), not from an upload."""
        text, files = text or "", [str(f) for f in (files or [])]
        messages = self._load(user_key, conversation_id)
        history = self._chat(user_key, messages)
        try:
            self._check_text(text, bool(files))
            attachments = self._check_files(text, files)
            backend = self._check_reply(user_key, options, attachments)
        except Rejected as rejected:
            box = rejected.box if isinstance(rejected, FilesRefused) else None
            yield self._rejected(user_key, conversation_id, messages, str(rejected), box=box)
            return
        restore = {"text": text, "files": files}
        shown = [file_part(Path(f), a.mime) for f, a in zip(files, attachments, strict=True)]
        pending = {
            "role": "user",
            "content": shown
            + ([text_part(safe_markdown(text))] if text else [])
            + ([text_part("🎤 *…listening…*")] if any(a.kind == "audio" for a in attachments) else []),
        }
        yield ChatUpdate(conversation_id, history + [pending, live_reply("")], box=EMPTY_BOX)
        try:
            from_microphone = [f in {str(r) for r in recorded} for f in files]
            transcript, warnings = self._transcribe(attachments, from_microphone)
        except InputError as error:
            yield self._rejected(user_key, conversation_id, messages, f"{error}", box=restore)
            return
        if messages is None:
            conversation_id = None  # none yet, or not this person's: a new one starts
        created = False
        try:
            if conversation_id is None:
                conversation_id = self.store.create_conversation(
                    user_key, model=backend.name, settings=options.stored()
                ).id
                created, messages = True, ()
            message = self.store.append_message(
                user_key,
                conversation_id,
                "user",
                text,
                transcript=transcript,
                attachments=[a.as_store_tuple() for a in attachments],
            )
        except StoreError as error:
            if created:
                self.store.delete_conversation(user_key, conversation_id)
            yield self._rejected(
                user_key, None if created else conversation_id, None if created else messages, str(error), box=restore
            )
            return
        yield from self.replier.stream(
            ReplyTurn(
                user_key,
                conversation_id,
                options,
                run_key,
                messages + (message,),
                rollback=message.id,
                restore=restore,
                created=created,
                warnings=warnings,
            ),
            backend,
        )

    def _transcribe(
        self, attachments: list[Attachment], from_microphone: list[bool]
    ) -> tuple[str | None, tuple[str, ...]]:
        """What was heard in the sounds (None: nothing), and warnings worded for where each came
        from (the microphone, or a file). Raises InputError."""
        transcript, warnings = None, ()
        for attachment, recorded in zip(attachments, from_microphone, strict=True):
            if attachment.kind == "audio":
                if recorded:
                    heard, heard_warnings = self.speech.transcribe(attachment.data)
                else:
                    heard, heard_warnings = self.speech.transcribe(attachment.data, name=attachment.name, uploaded=True)
                warnings += heard_warnings
                if heard:
                    transcript = heard if transcript is None else f"{transcript} {heard}"
        return transcript, warnings

    def regenerate(
        self, user_key: str, conversation_id: str | None, options: Options, run_key: str
    ) -> Iterator[ChatUpdate]:
        """Replace the reply to the last user message with a new one."""
        messages = self._load(user_key, conversation_id) or ()
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        try:
            if last_user is None:
                raise Rejected("Nothing to regenerate yet: send a message first.")
            backend = self._check_reply(user_key, options)
        except Rejected as rejected:
            yield self._rejected(user_key, conversation_id, messages, str(rejected))
            return
        messages = self._truncate(user_key, messages, last_user.id, keep=True)
        yield ChatUpdate(conversation_id, self._chat(user_key, messages) + [live_reply("")])
        yield from self.replier.stream(ReplyTurn(user_key, conversation_id, options, run_key, messages), backend)

    def edit(
        self, user_key: str, conversation_id: str | None, index: int, text: str, options: Options, run_key: str
    ) -> Iterator[ChatUpdate]:
        """Replace the user message at chat index `index` with `text` (same attachments), drop
        everything after it and reply again."""
        messages = self._load(user_key, conversation_id)
        try:
            if messages is None:
                raise Rejected("That conversation is gone; start a new one.")
            if not 0 <= index < len(messages) or messages[index].role != "user":
                raise Rejected("Only your own messages can be edited.")
            original = messages[index]
            self._check_text(text or "", bool(original.attachments))
            backend = self._check_reply(user_key, options)
            kept = [(a.kind, a.mime, self.store.read_attachment(user_key, a.id)) for a in original.attachments]
        except (Rejected, StoreError) as error:
            yield self._rejected(user_key, conversation_id, messages, str(error))
            return
        messages = self._truncate(user_key, messages, original.id, keep=False)
        message = self.store.append_message(
            user_key, conversation_id, "user", text or "", transcript=original.transcript, attachments=kept
        )
        messages += (message,)
        yield ChatUpdate(conversation_id, self._chat(user_key, messages) + [live_reply("")])
        yield from self.replier.stream(
            ReplyTurn(user_key, conversation_id, options, run_key, messages, rollback=message.id), backend
        )

    def undo(self, user_key: str, conversation_id: str | None) -> tuple[list[dict], dict | None]:
        """Remove the last user message and its reply; returns (chat, the message put back in
        the box, files included) or (chat, None) when there is nothing to undo."""
        messages = self._load(user_key, conversation_id) or ()
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            return self._chat(user_key, messages), None
        folder = self.settings.scratch("undo-")
        files = []
        for number, attachment in enumerate(last_user.attachments):
            try:
                data = self.store.read_attachment(user_key, attachment.id)
            except StoreError:
                continue
            path = folder / f"{attachment.kind}-{number + 1}{EXTENSIONS.get(attachment.mime, '')}"
            path.write_bytes(data)
            files.append(str(path))
        messages = self._truncate(user_key, messages, last_user.id, keep=False)
        return self._chat(user_key, messages), {"text": last_user.text, "files": files}

    def retract_recording(self, user_key: str, conversation_id: str | None) -> bool:
        """Remove the last turn if it is a recording alone (hands-free: its thought went on and
        comes again whole); True if it was removed. Typed messages are never retracted."""
        messages = self._load(user_key, conversation_id) or ()
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None or last_user.text.strip() or not any(a.kind == "audio" for a in last_user.attachments):
            return False
        self._truncate(user_key, messages, last_user.id, keep=False)
        return True

    def _truncate(
        self, user_key: str, messages: tuple[Message, ...], message_id: str, keep: bool
    ) -> tuple[Message, ...]:
        """Delete a message and all after it (keep=False) or only what follows it (keep=True);
        the views of media the store no longer has go too. Returns the messages left."""
        start = [m.id for m in messages].index(message_id) + (1 if keep else 0)
        doomed = messages[start:]
        if doomed:
            self.store.delete_from(user_key, doomed[0].id)
        self.views.forget_unused({a.sha256 for m in doomed for a in m.attachments})
        return messages[:start]

    def feedback(self, user_key: str, conversation_id: str | None, index: int, liked) -> bool:
        """Like (True/"Like"), dislike (False/"Dislike") or clear (None) the reply at `index`."""
        messages = self._load(user_key, conversation_id) or ()
        if not isinstance(index, int) or not 0 <= index < len(messages) or messages[index].role != "assistant":
            return False
        value = {True: "like", "Like": "like", False: "dislike", "Dislike": "dislike"}.get(liked)
        self.store.set_feedback(user_key, messages[index].id, value)
        return True
