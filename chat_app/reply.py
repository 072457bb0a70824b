"""The one path of every reply (send, regenerate, edit): stored messages in, a streamed,
stored reply out.

    replier = Replier(store, views, speech, runs, settings)
    for update in replier.stream(ReplyTurn(user_key, conversation_id, options, run_key, messages), backend):
        show(update.messages)

`messages` is the conversation as stored once the user's message is in, loaded once by the
caller; the reply's own record comes back from the store as it is finished, so the chat
after the reply is shown without loading the conversation again. The reply is saved by a
`ReplyRecorder`; spoken replies come from one `SentenceSpeaker`. It ends "complete",
"interrupted" (stop, closed tab: exactly the text that was shown) or "error"; a reply the
engine refuses before its first piece ("rejected") rolls the turn back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from chat_app.recorder import ReplyRecorder
from chat_app.render import MediaViews, live_reply, render_messages, turn_report
from chat_app.runs import Run, Runs
from chat_app.settings import Settings
from chat_app.speech import sentence_speaker
from chat_app.store import ConversationStore, Message, StoreError
from chat_app.titles import tell_apart
from chat_app.updates import ChatUpdate, Options
from engine.types import Conversation as EngineConversation
from engine.types import InputError, ReplyInfo, Turn

log = logging.getLogger(__name__)

FRAME_S = 0.05  # at most 20 chat updates a second while a reply streams


@dataclass(frozen=True)
class ReplyTurn:
    """What one reply answers, and how to undo the turn if the engine refuses it."""

    user_key: str
    conversation_id: str
    options: Options
    run_key: str
    messages: tuple[Message, ...]  # the conversation as stored, the user's message last
    rollback: str | None = None  # the user message to delete when the input is refused
    restore: dict | None = None  # the message box to give back then
    created: bool = False  # the conversation is new: delete it too then
    warnings: tuple[str, ...] = ()  # about the recording (nothing heard, recognition failed)


@dataclass
class _Progress:
    text: str = ""  # every piece so far
    status: str = "error"  # complete | interrupted | error | rejected
    problem: str | None = None  # shown as a notice
    sounds: list[bytes] = field(default_factory=list)  # spoken sentences not yet sent


def engine_conversation(
    store: ConversationStore, user_key: str, messages, system_prompt: str, backend
) -> EngineConversation:
    """Stored messages → the engine's Conversation (media as paths to the stored files)."""
    takes_images, takes_audio = backend.capabilities.takes_images, backend.capabilities.audio
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
                path = store.attachment_path(user_key, attachment.id)
            except StoreError:  # dropped by retention: the text stays
                continue
            (images if attachment.kind == "image" else audio).append(path)
        text = message.text
        if message.transcript and transcript_as_text:
            text = f"{text}\n{message.transcript}".strip()
        turns.append(Turn("user", text, images=images if takes_images else [], audio=audio if takes_audio else []))
    return EngineConversation(system_prompt or "", turns)


class Replier:
    """Streams a backend's reply into chat updates and the store."""

    def __init__(self, store: ConversationStore, views: MediaViews, speech, runs: Runs, settings: Settings) -> None:
        self.store, self.views, self.speech, self.runs, self.settings = store, views, speech, runs, settings

    def stream(self, turn: ReplyTurn, backend) -> Iterator[ChatUpdate]:
        """The reply's updates; the last one has done=True, the final chat and its report."""
        config = turn.options.generation()
        conversation = engine_conversation(
            self.store, turn.user_key, turn.messages, turn.options.system_prompt, backend
        )
        run, info, progress = self.runs.start(turn.run_key), ReplyInfo(), _Progress()
        recorder = ReplyRecorder(
            self.store,
            turn.user_key,
            turn.conversation_id,
            backend.name,
            turn.options.stored(),
            turn.warnings,
            self.settings.checkpoint_every_s,
        )
        pieces = backend.stream(conversation, config, cancel=run.cancel, info=info)
        history = render_messages(turn.messages, self.views, turn.user_key)
        try:
            yield from self._pieces(turn, pieces, run, info, recorder, progress, history)
        except GeneratorExit:  # the browser stopped listening (stop button, closed tab)
            progress.status = "interrupted"
            self._finish(run, recorder, progress, info)
            raise
        except InputError as error:  # the engine refused the input before the first piece
            progress.problem = str(error)
            progress.status = "error" if recorder.begun else "rejected"
            run.shown = progress.text  # the final update shows all of it
        except Exception as error:  # noqa: BLE001 - any failure of the model ends the reply, not the app
            log.exception("reply failed")
            progress.problem = (
                f"The model failed: {error}" if str(error) else f"The model failed ({type(error).__name__})."
            )
            run.shown = progress.text
        message = self._finish(run, recorder, progress, info)
        if turn.created and message is not None:  # the first reply: a title shared with another gets a hint
            tell_apart(self.store, turn.user_key, turn.conversation_id, message.text, info.observations)
        yield from self._ending(turn, progress, message)

    def _pieces(
        self,
        turn: ReplyTurn,
        pieces,
        run: Run,
        info: ReplyInfo,
        recorder: ReplyRecorder,
        progress: _Progress,
        history: list[dict],
    ) -> Iterator[ChatUpdate]:
        """Stream the pieces: updates at most every FRAME_S (and with each sentence's sound),
        checkpoints, and the status the reply ended with."""
        speaker = sentence_speaker(self.speech) if turn.options.spoken else None
        last_frame = time.monotonic()
        try:
            for piece in pieces:
                recorder.begin(info)
                progress.text += piece
                if speaker is not None:
                    progress.sounds.extend(speaker.push(piece))
                if run.cancel.is_set():
                    break
                now = time.monotonic()
                if progress.sounds or now - last_frame >= FRAME_S:
                    run.shown, last_frame = progress.text, now
                    yield ChatUpdate(
                        turn.conversation_id,
                        history + [live_reply(progress.text)],
                        speech=progress.sounds.pop(0) if progress.sounds else None,
                    )
                recorder.checkpoint(run.shown, now)
            if run.cancel.is_set() or info.finish_reason == "cancelled":
                progress.status = "interrupted"
            else:
                progress.status, run.shown = "complete", progress.text
                if speaker is not None:
                    progress.sounds.extend(speaker.flush())
        finally:
            pieces.close()  # the engine frees this reply's cache

    def _finish(self, run: Run, recorder: ReplyRecorder, progress: _Progress, info: ReplyInfo) -> Message | None:
        """Store how the reply ended (once), then let `stop` return."""
        try:
            if progress.status == "rejected":
                recorder.discard()
                return None
            return recorder.finish(run.shown, progress.status, info)
        finally:
            self.runs.end(run)

    def _ending(self, turn: ReplyTurn, progress: _Progress, message: Message | None) -> Iterator[ChatUpdate]:
        """The chat once the reply is stored (or the turn rolled back), then the sounds left."""
        conversation_id, messages, box = turn.conversation_id, turn.messages, None
        if progress.status == "rejected":
            if turn.rollback:
                self.store.delete_from(turn.user_key, turn.rollback)
                messages = messages[: [m.id for m in messages].index(turn.rollback)]
            if turn.created:
                self.store.delete_conversation(turn.user_key, conversation_id)
                conversation_id, messages = None, ()
            box = turn.restore
        elif message is not None:
            messages = messages + (message,)
        else:  # the end could not be stored: show what the store has
            messages = self._reload(turn.user_key, conversation_id)
        chat = render_messages(messages, self.views, turn.user_key)
        said = [*(turn.warnings if progress.status != "rejected" else ()), progress.problem]
        said = " ".join(s for s in said if s) or None  # e.g. nothing was heard in the recording
        sounds = progress.sounds
        for wav in sounds[:-1]:
            yield ChatUpdate(conversation_id, chat, speech=wav)
        yield ChatUpdate(
            conversation_id,
            chat,
            box=box,
            speech=sounds[-1] if sounds else None,
            notice=said,
            done=True,
            list_changed=True,
            report=turn_report(messages, None, self.views, turn.user_key),
        )

    def _reload(self, user_key: str, conversation_id: str) -> tuple[Message, ...]:
        try:
            return self.store.get_conversation(user_key, conversation_id).messages
        except StoreError:
            return ()
