"""What happens when someone sends, stops, regenerates, edits or undoes: plain Python over the
store and the backends, so it is tested without a browser. `chat_app/app.py` wires these
to Gradio events; nothing here imports gradio or torch.

    service = ChatService(store, {"builtin:small": backend}, settings)
    for update in service.send(user_key, conversation_id, "What is this?", ["cat.jpg"], Options(),
                               run_key=session):
        show(update.messages)          # the whole chat, the reply growing at the end
    service.stop(session)              # from another thread: the reply ends "interrupted"

One reply, end to end: the input is checked (text length, files, guest limits) → audio is
transcribed → the user's message is stored → the backend streams, sentence audio is made
when spoken replies are on → the reply is saved as it grows (a checkpoint each second) →
it ends "complete", "interrupted" (stop, closed tab; exactly the text that was shown) or
"error". Bad input never reaches the store: it comes back as a notice in the chat.
"""

from __future__ import annotations

import collections
import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from chat_app.history import History
from chat_app.render import (MediaViews, live_reply, notice, render_messages, safe_markdown, text_part,
                             file_part, turn_report, TurnReport)
from chat_app.settings import Settings
from chat_app.store import ConversationStore, NotFound, StoreError
from chat_app.uploads import EXTENSIONS, Attachment, Rejected, check_file
from engine.backends.base import Sampling
from engine.types import Conversation as EngineConversation
from engine.types import EngineError, GenerationConfig, InputError, ReplyInfo, Turn

log = logging.getLogger(__name__)

EMPTY_BOX = {"text": "", "files": []}
FALLBACK_SAMPLING = Sampling(temperature=0.7, top_p=0.95)  # for models that say nothing
FRAME_S = 0.05  # at most 20 chat updates a second while a reply streams


@dataclass(frozen=True)
class Options:
    """The settings panel: which model, and how to decode."""

    model: str = ""  # a key of ChatService.backends ("" = the first)
    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 256
    spoken: bool = False  # speak the reply, sentence by sentence
    seed: int | None = None

    def generation(self) -> GenerationConfig:
        try:
            return GenerationConfig(max_new_tokens=int(self.max_new_tokens), temperature=float(self.temperature),
                                    top_p=float(self.top_p), seed=self.seed)
        except (TypeError, ValueError) as error:
            raise Rejected(f"Invalid settings: {error}") from None
        except InputError as error:
            raise Rejected(str(error)) from None

    def stored(self) -> dict:
        """What is kept with each reply (the model is kept on its own)."""
        settings = asdict(self)
        settings.pop("model")
        settings.pop("spoken")
        return settings


@dataclass
class ChatUpdate:
    """What the chat shows now; the app turns it into component values."""

    conversation_id: str | None
    messages: list[dict]  # the whole chat in gr.Chatbot's format
    box: dict | None = None  # the message box's new value; None leaves it as it is
    speech: bytes | None = None  # WAV of the next spoken sentence
    notice: str | None = None  # bad input, failures: also shown in `messages`
    done: bool = False
    list_changed: bool = False  # the conversation list needs refreshing (new, renamed by its first message)


@dataclass(eq=False)
class Run:
    """One reply being generated; `stop` sets `cancel`, the engine's cancel event."""

    key: str
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    shown: str = ""  # the reply's text as last sent to the browser


class Speech:
    """Speech recognition and synthesis from `engine.speech`, loaded on first use.

    Missing pieces (faster-whisper, the bundled Whisper model, espeak-ng) turn the feature
    off with a reason instead of failing the turn.
    """

    def __init__(self) -> None:
        self.asr_problem: str | None = None
        self.tts_problem: str | None = None

    def transcribe(self, data: bytes) -> tuple[str | None, tuple[str, ...]]:
        """(transcript or None when nothing was said, warnings). Raises InputError for bad audio."""
        if self.asr_problem:
            return None, ()
        try:
            from engine.speech.asr import get_transcriber

            transcript = get_transcriber().transcribe(data)
        except InputError:
            raise
        except (ImportError, EngineError) as error:
            self.asr_problem = str(error) or type(error).__name__
            log.warning("speech recognition is off: %s", self.asr_problem)
            return None, ()
        except Exception as error:  # noqa: BLE001 - one clip failing leaves the turn (and ASR) alive
            log.exception("speech recognition failed on a clip")
            return None, (f"Speech recognition failed on this recording ({error}); the model still gets the sound.",)
        return (transcript.text if transcript.heard else None), tuple(transcript.warnings)

    def synthesize(self, sentence: str) -> bytes | None:
        if self.tts_problem:
            return None
        try:
            from engine.speech.tts import synthesize, wav_bytes

            waveform, sample_rate = synthesize(sentence)
        except (ImportError, EngineError, OSError) as error:
            self.tts_problem = str(error) or type(error).__name__
            log.warning("spoken replies are off: %s", self.tts_problem)
            return None
        return wav_bytes(waveform, sample_rate) if waveform.size else None

    def chunker(self):
        try:
            from engine.speech.tts import SentenceChunker
        except ImportError as error:
            self.tts_problem = str(error)
            return None
        return SentenceChunker()


def _purge_old(folder: Path, max_age_s: float) -> None:
    """Delete what is older than `max_age_s` in a scratch folder (files and their folders)."""
    if not folder.is_dir():
        return
    limit = time.time() - max_age_s
    for entry in folder.iterdir():
        try:
            if entry.stat().st_mtime < limit:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        except OSError:
            pass


class RateLimiter:
    """At most `per_hour` events per key in any hour (guests of a shared link)."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._events: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            events = self._events[key]
            while events and events[0] <= now - 3600:
                events.popleft()
            if len(events) >= self.per_hour:
                wait = int(events[0] + 3600 - now) // 60 + 1
                raise Rejected(f"Guests of this shared link may send {self.per_hour} "
                               f"message{'s' if self.per_hour != 1 else ''} an hour; "
                               f"try again in {wait} minute{'s' if wait != 1 else ''}.")
            events.append(now)


class ChatService:
    """Turns (send, regenerate, edit, undo, stop, feedback) over one store and some backends."""

    def __init__(self, store: ConversationStore, backends: Mapping[str, object], settings: Settings,
                 speech: Speech | None = None) -> None:
        if not backends:
            raise ValueError("ChatService needs at least one backend")
        self.store = store
        self.backends = dict(backends)
        self.settings = settings
        self.speech = speech if speech is not None else Speech()
        self.views = MediaViews(store, settings.view_dir)
        self.views.sweep()
        _purge_old(settings.scratch_dir, max_age_s=24 * 3600)
        self.history = History(store, self.views, settings)
        self.limiter = RateLimiter(settings.guest.turns_per_hour) if settings.guest else None
        self._runs: dict[str, set[Run]] = collections.defaultdict(set)
        self._runs_lock = threading.Lock()

    # ------------------------------------------------------------------------- basics

    def backend(self, name: str | None):
        if not name:
            return next(iter(self.backends.values()))
        try:
            return self.backends[name]
        except KeyError:
            raise Rejected(f"There is no model called {name!r} here; choose one of "
                           f"{', '.join(self.backends)}.") from None

    def default_options(self, model: str | None = None) -> Options:
        """The settings panel's start for `model` (default: the first): the app's settings, with
        temperature and top-p from the model's own decoding defaults where the settings leave them."""
        s = self.settings
        name = model if model in self.backends else next(iter(self.backends))
        own = self.backends[name].sampling or FALLBACK_SAMPLING
        return Options(name, s.system_prompt, own.temperature if s.temperature is None else s.temperature,
                       own.top_p if s.top_p is None else s.top_p, s.max_new_tokens, s.spoken_replies)

    def view(self, user_key: str, conversation_id: str | None) -> list[dict]:
        """The stored conversation as chat messages ([] for none or one not found)."""
        if not conversation_id:
            return []
        try:
            conversation = self.store.get_conversation(user_key, conversation_id)
        except NotFound:
            return []
        return render_messages(conversation.messages, self.views, user_key)

    def report(self, user_key: str, conversation_id: str | None, index: int | None = None) -> TurnReport:
        """What the model saw and heard for the reply at chat index `index` (default: the last)."""
        messages = ()
        if conversation_id:
            try:
                messages = self.store.get_conversation(user_key, conversation_id).messages
            except NotFound:
                pass
        return turn_report(messages, index, self.views, user_key)

    def _rejected(self, conversation_id, messages, message: str, box=None) -> ChatUpdate:
        return ChatUpdate(conversation_id, messages + [notice(message)], box=box, notice=message, done=True)

    def _check_text(self, text: str, has_files: bool) -> None:
        if not text.strip() and not has_files:
            raise Rejected("Nothing to send: type a message, or attach a picture or a sound.")
        limit = self.settings.max_message_chars
        if len(text) > limit:
            raise Rejected(f"That message is {len(text):,} characters long; the limit is {limit:,}. "
                           "Shorten it or send it in parts.")

    def _check_backend(self, backend, attachments: list[Attachment]) -> None:
        kinds = {a.kind for a in attachments}
        if "image" in kinds and not backend.capabilities.images:
            raise Rejected(f"The model {backend.name} cannot see pictures; choose another model or send text.")
        if "audio" in kinds and not backend.capabilities.audio and self.speech.asr_problem:
            raise Rejected(f"The model {backend.name} cannot hear sound and speech recognition is off "
                           f"({self.speech.asr_problem}).")

    # ------------------------------------------------------------------------- runs (stop)

    def _start_run(self, run_key: str) -> Run:
        run = Run(run_key)
        with self._runs_lock:
            self._runs[run_key].add(run)
        return run

    def _end_run(self, run: Run) -> None:
        with self._runs_lock:
            runs = self._runs.get(run.key)
            if runs is not None:
                runs.discard(run)
                if not runs:
                    del self._runs[run.key]
        run.done.set()

    def stop(self, run_key: str, wait_s: float = 5.0) -> bool:
        """Stop the replies of this browser session; True if one was running. Waits until they
        are stored (status "interrupted") and the engine has freed their cache."""
        with self._runs_lock:
            runs = list(self._runs.get(run_key, ()))
        for run in runs:
            run.cancel.set()
        deadline = time.monotonic() + wait_s
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        return bool(runs)

    def running(self, run_key: str) -> bool:
        with self._runs_lock:
            return bool(self._runs.get(run_key))

    # ------------------------------------------------------------------------- turns

    def send(self, user_key: str, conversation_id: str | None, text: str, files: list, options: Options,
             run_key: str) -> Iterator[ChatUpdate]:
        """A new user message (text and/or files) and the reply to it."""
        text, files = text or "", [str(f) for f in (files or [])]
        history = self.view(user_key, conversation_id)
        box = None  # on refusal the box keeps what was typed; refused files are taken out of it
        try:
            self._check_text(text, bool(files))
            if len(files) > self.settings.max_files_per_turn:
                raise Rejected(f"That is {len(files)} files; one message may carry at most "
                               f"{self.settings.max_files_per_turn}.")
            checked, problems = [], []
            for path in files:
                try:
                    checked.append((path, check_file(path, self.settings.upload_limit_bytes)))
                except Rejected as problem:
                    problems.append(str(problem))
            if problems:
                box = {"text": text, "files": [path for path, _ in checked]}
                raise Rejected(" ".join(problems))
            attachments = [attachment for _, attachment in checked]
            backend = self.backend(options.model)
            self._check_backend(backend, attachments)
            options.generation()
            if self.limiter:
                self.limiter.check(user_key)
        except Rejected as rejected:
            yield self._rejected(conversation_id, history, str(rejected), box=box)
            return
        restore = {"text": text, "files": files}
        pending = {"role": "user", "content": [file_part(Path(f), a.mime) for f, a in zip(files, attachments)]
                   + ([text_part(safe_markdown(text))] if text else [])
                   + ([text_part("🎤 *…listening…*")] if any(a.kind == "audio" for a in attachments) else [])}
        yield ChatUpdate(conversation_id, history + [pending, live_reply("")], box=EMPTY_BOX)

        transcript, warnings = None, ()
        try:
            for attachment in attachments:
                if attachment.kind == "audio":
                    heard, heard_warnings = self.speech.transcribe(attachment.data)
                    warnings += heard_warnings
                    if heard:
                        transcript = heard if transcript is None else f"{transcript} {heard}"
        except InputError as error:
            yield self._rejected(conversation_id, history, f"{error}", box=restore)
            return

        created = False
        try:
            if conversation_id:
                try:
                    self.store.get_conversation(user_key, conversation_id)
                except NotFound:
                    conversation_id = None
            if not conversation_id:
                conversation_id = self.store.create_conversation(user_key, model=backend.name,
                                                                 settings=options.stored()).id
                created = True
            message = self.store.append_message(user_key, conversation_id, "user", text, transcript=transcript,
                                                attachments=[a.as_store_tuple() for a in attachments])
        except StoreError as error:
            if created:
                self.store.delete_conversation(user_key, conversation_id)
            yield self._rejected(None if created else conversation_id, history, str(error), box=restore)
            return
        history = self.view(user_key, conversation_id)
        yield from self._reply(user_key, conversation_id, options, run_key, history, rollback=message.id,
                               restore=restore, created=created, warnings=warnings)

    def regenerate(self, user_key: str, conversation_id: str | None, options: Options,
                   run_key: str) -> Iterator[ChatUpdate]:
        """Replace the reply to the last user message with a new one."""
        history = self.view(user_key, conversation_id)
        try:
            messages = self.store.get_conversation(user_key, conversation_id).messages if conversation_id else ()
        except NotFound:
            messages = ()
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        try:
            if last_user is None:
                raise Rejected("Nothing to regenerate yet: send a message first.")
            self.backend(options.model)
            options.generation()
            if self.limiter:
                self.limiter.check(user_key)
        except Rejected as rejected:
            yield self._rejected(conversation_id, history, str(rejected))
            return
        self._truncate(user_key, conversation_id, last_user.id, keep=True)
        history = self.view(user_key, conversation_id)
        yield ChatUpdate(conversation_id, history + [live_reply("")])
        yield from self._reply(user_key, conversation_id, options, run_key, history)

    def edit(self, user_key: str, conversation_id: str | None, index: int, text: str, options: Options,
             run_key: str) -> Iterator[ChatUpdate]:
        """Replace the user message at chat index `index` with `text` (same attachments), drop
        everything after it and reply again."""
        history = self.view(user_key, conversation_id)
        try:
            try:
                messages = self.store.get_conversation(user_key, conversation_id).messages
            except (NotFound, TypeError):
                raise Rejected("That conversation is gone; start a new one.") from None
            if not 0 <= index < len(messages) or messages[index].role != "user":
                raise Rejected("Only your own messages can be edited.")
            original = messages[index]
            self._check_text(text or "", bool(original.attachments))
            self.backend(options.model)
            options.generation()
            if self.limiter:
                self.limiter.check(user_key)
            kept = [(a.kind, a.mime, self.store.read_attachment(user_key, a.id)) for a in original.attachments]
        except Rejected as rejected:
            yield self._rejected(conversation_id, history, str(rejected))
            return
        except StoreError as error:
            yield self._rejected(conversation_id, history, str(error))
            return
        self._truncate(user_key, conversation_id, original.id, keep=False)
        message = self.store.append_message(user_key, conversation_id, "user", text or "",
                                            transcript=original.transcript, attachments=kept)
        history = self.view(user_key, conversation_id)
        yield ChatUpdate(conversation_id, history + [live_reply("")])
        yield from self._reply(user_key, conversation_id, options, run_key, history, rollback=message.id)

    def undo(self, user_key: str, conversation_id: str | None) -> tuple[list[dict], dict | None]:
        """Remove the last user message and its reply; returns (chat, the message put back in
        the box, files included) or (chat, None) when there is nothing to undo."""
        try:
            messages = self.store.get_conversation(user_key, conversation_id).messages if conversation_id else ()
        except NotFound:
            messages = ()
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            return self.view(user_key, conversation_id), None
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
        self._truncate(user_key, conversation_id, last_user.id, keep=False)
        return self.view(user_key, conversation_id), {"text": last_user.text, "files": files}

    def _truncate(self, user_key: str, conversation_id: str, message_id: str, keep: bool) -> list:
        """Delete a message and all after it (keep=False) or only what follows it (keep=True);
        the views of media the store no longer has go too. Returns the deleted messages."""
        messages = self.store.get_conversation(user_key, conversation_id).messages
        start = [m.id for m in messages].index(message_id) + (1 if keep else 0)
        doomed = messages[start:]
        if doomed:
            self.store.delete_from(user_key, doomed[0].id)
        self.views.forget_unused({a.sha256 for m in doomed for a in m.attachments})
        return list(doomed)

    def feedback(self, user_key: str, conversation_id: str | None, index: int, liked) -> bool:
        """Like (True/"Like"), dislike (False/"Dislike") or clear (None) the reply at `index`."""
        try:
            messages = self.store.get_conversation(user_key, conversation_id).messages if conversation_id else ()
        except NotFound:
            return False
        if not isinstance(index, int) or not 0 <= index < len(messages) or messages[index].role != "assistant":
            return False
        value = {True: "like", "Like": "like", False: "dislike", "Dislike": "dislike"}.get(liked)
        self.store.set_feedback(user_key, messages[index].id, value)
        return True

    # ------------------------------------------------------------------------- the reply

    def engine_conversation(self, user_key: str, messages, system_prompt: str, backend) -> EngineConversation:
        """Stored messages → the engine's Conversation (media as paths to the stored files)."""
        takes_images = backend.capabilities.images
        takes_audio = backend.capabilities.audio
        transcript_as_text = not (takes_audio and backend.capabilities.transcribes_audio)
        turns = []
        for message in messages:
            if message.role == "assistant":
                if message.text:
                    turns.append(Turn("assistant", message.text))
                continue
            if message.role != "user":
                continue
            images, audio = [], []
            for attachment in message.attachments:
                try:
                    path = self.store.attachment_path(user_key, attachment.id)
                except StoreError:  # dropped by retention: the text stays
                    continue
                (images if attachment.kind == "image" else audio).append(path)
            text = message.text
            if message.transcript and transcript_as_text:
                text = f"{text}\n{message.transcript}".strip()
            turns.append(Turn("user", text, images=images if takes_images else [],
                              audio=audio if takes_audio else []))
        return EngineConversation(system_prompt or "", turns)

    def _reply(self, user_key: str, conversation_id: str, options: Options, run_key: str, history: list[dict],
               rollback: str | None = None, restore: dict | None = None, created: bool = False,
               warnings: tuple[str, ...] = ()) -> Iterator[ChatUpdate]:
        backend = self.backend(options.model)
        config = options.generation()
        messages = self.store.get_conversation(user_key, conversation_id).messages
        conversation = self.engine_conversation(user_key, messages, options.system_prompt, backend)
        run = self._start_run(run_key)
        info = ReplyInfo()
        chunker = self.speech.chunker() if options.spoken else None
        state = {"message_id": None, "status": "error", "problem": None}
        pieces = backend.stream(conversation, config, cancel=run.cancel, info=info)

        def begin() -> None:
            report = {"observations": list(info.observations), "prompt_tokens": info.prompt_tokens,
                      "dropped_turns": info.dropped_turns,
                      "first_token_ms": round((info.time_to_first_token_s or 0.0) * 1000, 1)}
            if warnings:
                report["warnings"] = list(warnings)
            state["message_id"] = self.store.begin_reply(user_key, conversation_id, model=backend.name,
                                                         settings=dict(options.stored(), report=report))

        text, spoken = "", []
        last_frame = last_checkpoint = time.monotonic()
        try:
            try:
                for piece in pieces:
                    if state["message_id"] is None:
                        begin()
                    text += piece
                    if chunker is not None:
                        for sentence in chunker.push(piece):
                            if any(ch.isalnum() for ch in sentence) and (wav := self.speech.synthesize(sentence)):
                                spoken.append(wav)
                    if run.cancel.is_set():
                        break
                    now = time.monotonic()
                    if spoken or now - last_frame >= FRAME_S:
                        run.shown, last_frame = text, now
                        yield ChatUpdate(conversation_id, history + [live_reply(text)],
                                         speech=spoken.pop(0) if spoken else None)
                    if now - last_checkpoint >= self.settings.checkpoint_every_s:
                        self.store.update_reply(user_key, state["message_id"], run.shown)
                        last_checkpoint = now
                if run.cancel.is_set() or info.finish_reason == "cancelled":
                    state["status"] = "interrupted"
                else:
                    state["status"], run.shown = "complete", text
                    if chunker is not None:
                        for sentence in chunker.flush():
                            if any(ch.isalnum() for ch in sentence) and (wav := self.speech.synthesize(sentence)):
                                spoken.append(wav)
            finally:
                pieces.close()  # the engine frees this reply's cache
        except GeneratorExit:  # the browser stopped listening (stop button, closed tab)
            state["status"] = "interrupted"
            self._finish(run, user_key, conversation_id, state, info, begin)
            raise
        except InputError as error:  # the engine refused the input before the first piece
            state["problem"] = str(error)
            state["status"] = "rejected" if state["message_id"] is None else "error"
            run.shown = text  # the final update shows all of it
        except Exception as error:  # noqa: BLE001 - any failure of the model ends the reply, not the app
            log.exception("reply failed")
            state["problem"] = (f"The model failed: {error}" if str(error)
                                else f"The model failed ({type(error).__name__}).")
            run.shown = text
        self._finish(run, user_key, conversation_id, state, info, begin)

        box = None
        if state["status"] == "rejected":
            if rollback:
                self.store.delete_from(user_key, rollback)
            if created:
                self.store.delete_conversation(user_key, conversation_id)
                conversation_id = None
            box = restore
        chat = self.view(user_key, conversation_id)
        if warnings and state["status"] != "rejected":
            chat.append(notice(" ".join(warnings)))  # e.g. nothing was heard in the recording
        if state["problem"]:
            chat.append(notice(state["problem"]))
        for wav in spoken[:-1]:
            yield ChatUpdate(conversation_id, chat, speech=wav)
        yield ChatUpdate(conversation_id, chat, box=box, speech=spoken[-1] if spoken else None,
                         notice=state["problem"], done=True, list_changed=True)

    def _finish(self, run: Run, user_key: str, conversation_id: str, state: dict, info: ReplyInfo, begin) -> None:
        """Store how the reply ended (once), then let `stop` return."""
        try:
            status = state["status"]
            if status == "rejected":
                return
            if state["message_id"] is None:
                begin()
            text = run.shown
            self.store.finish_reply(user_key, state["message_id"], text, status if status != "rejected" else "error",
                                    latency_ms=round(info.total_time_s * 1000, 1) if info.total_time_s else None,
                                    tokens=info.new_tokens)
        except StoreError:
            log.exception("could not store the end of a reply")
        finally:
            self._end_run(run)
