"""The chat's events: the page's components (chat_app/layout.py) wired to `ChatService`.

Every event that runs the model (send, push-to-talk, hands-free, regenerate, retry, edit)
goes through one path, `ChatEvents.reply`: who asks, with which settings, and the
service's turn (send, regenerate or edit); each Gradio handler only reads its inputs.
These events share one concurrency group of `settings.concurrency` slots: the others wait in
the queue and see their position. The light events (stop, feedback, report) have no limit.
Every event has an `api_name`, so `gradio_client` drives the same functions the browser does.
The sidebar's events are in chat_app/sidebar.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import gradio as gr

from chat_app.handlers import ChatService, ChatUpdate, Options
from chat_app.handsfree import Listener, save_heard
from chat_app.identity import session, user_key
from chat_app.layout import Layout
from chat_app.render import TurnReport, notice_markdown
from chat_app.settings import Settings

REPLY_EVENTS = "reply"  # the concurrency group of the events that run the model
LIGHT = dict(concurrency_limit=None, show_progress="hidden")


def box_parts(message, extra: str | None = None) -> tuple[str, list]:
    """The message box's (text, files), with `extra` (a recording) attached last."""
    message = message if isinstance(message, dict) else {"text": str(message or "") if extra is None else ""}
    files = list(message.get("files") or [])
    return message.get("text") or "", files + [extra] if extra else files


def report_values(report: TurnReport) -> tuple:
    """(Markdown, images, audio) for the report panel."""
    return report.markdown, [str(p) for p in report.images] or None, str(report.audio[0]) if report.audio else None


class ChatEvents:
    """The chat's Gradio handlers over one ChatService."""

    def __init__(self, service: ChatService, settings: Settings, ui: Layout) -> None:
        self.service, self.settings, self.ui = service, settings, ui
        self.defaults = service.default_options()

    # ------------------------------------------------------------------------- the reply path

    def options(self, model, system, temperature, top_p, max_tokens, spoken) -> Options:
        return Options(model or self.defaults.model, system or "", temperature, top_p, max_tokens, bool(spoken))

    def outputs(self, update: ChatUpdate, new_id: bool, key: str, first: bool = False) -> tuple:
        """(chatbot, box, conversation, conversation list, spoken audio, reply report, notice) for
        one update. The spoken reply's stream opens with its first sound (a stream opened on
        nothing has an empty playlist, which the browser's player reports as an error); the
        notice is cleared by a turn's first update and set by its last."""
        refresh = new_id or update.done or update.list_changed
        choices = self.service.history.choices(key) if refresh else None
        if update.notice:
            said = gr.update(value=notice_markdown(update.notice), visible=True)
        else:
            said = gr.update(value="", visible=False) if first else gr.skip()
        return (
            update.messages,
            update.box if update.box is not None else gr.skip(),
            update.conversation_id,
            gr.update(choices=choices, value=update.conversation_id) if refresh else gr.skip(),
            update.speech if update.speech is not None else gr.skip(),
            report_values(update.report) if update.report is not None else None,
            said,
        )

    def reply(
        self,
        request: gr.Request,
        browser_id,
        conversation_id,
        option_values: tuple,
        turn: Callable[..., Iterator[ChatUpdate]],
        *asked,
    ) -> Iterator[tuple]:
        """The one path of every reply event: `turn(key, conversation_id, *asked, options, run_key)`
        (a ChatService turn) streamed as component values."""
        key = user_key(request, browser_id)
        updates = turn(key, conversation_id, *asked, self.options(*option_values), session(request))
        shown_id = first = object()
        for update in updates:
            yield self.outputs(update, update.conversation_id != shown_id, key, first=shown_id is first)
            shown_id = update.conversation_id

    def on_send(
        self,
        browser_id,
        conversation_id,
        message,
        model_,
        system_,
        temperature_,
        top_p_,
        max_tokens_,
        spoken_,
        request: gr.Request,
    ):
        """Send the message box (text and files); streams (chat, box, conversation id, list, speech)."""
        values = (model_, system_, temperature_, top_p_, max_tokens_, spoken_)
        yield from self.reply(request, browser_id, conversation_id, values, self.service.send, *box_parts(message))

    def on_talk(
        self,
        browser_id,
        conversation_id,
        message,
        recording,
        model_,
        system_,
        temperature_,
        top_p_,
        max_tokens_,
        spoken_,
        request: gr.Request,
    ):
        """Push-to-talk: send the recording with whatever is in the message box."""
        if not recording:
            return
        values = (model_, system_, temperature_, top_p_, max_tokens_, spoken_)
        first = True
        send = partial(self.service.send, recorded=(recording,))
        for outputs in self.reply(request, browser_id, conversation_id, values, send, *box_parts(message, recording)):
            yield (*outputs, None if first else gr.skip())  # the recorder is emptied once
            first = False

    def on_utterance(
        self,
        browser_id,
        conversation_id,
        message,
        heard,
        model_,
        system_,
        temperature_,
        top_p_,
        max_tokens_,
        spoken_,
        request: gr.Request,
    ):
        """Hands-free: send the turn heard ({"path", "replaces"}). A turn that replaces the one
        before (the rest of the same thought) takes that recording's place: its reply was
        stopped when it was heard (`on_chunk`), and both parts go as one."""
        if not heard:
            return
        path = heard["path"] if isinstance(heard, dict) else str(heard)
        if isinstance(heard, dict) and heard.get("replaces"):
            self.service.retract_recording(user_key(request, browser_id), conversation_id)
        values = (model_, system_, temperature_, top_p_, max_tokens_, spoken_)
        send = partial(self.service.send, recorded=(path,))
        yield from self.reply(request, browser_id, conversation_id, values, send, *box_parts(message, path))

    def on_regenerate(
        self,
        browser_id,
        conversation_id,
        model_,
        system_,
        temperature_,
        top_p_,
        max_tokens_,
        spoken_,
        request: gr.Request,
    ):
        values = (model_, system_, temperature_, top_p_, max_tokens_, spoken_)
        yield from self.reply(request, browser_id, conversation_id, values, self.service.regenerate)

    def on_edit(
        self,
        browser_id,
        conversation_id,
        model_,
        system_,
        temperature_,
        top_p_,
        max_tokens_,
        spoken_,
        edit: gr.EditData,
        request: gr.Request,
    ):
        value = edit.value
        if isinstance(value, list):  # [{"type": "text", "text": ...}, files...]
            value = " ".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
        index = edit.index if isinstance(edit.index, int) else edit.index[0]
        values = (model_, system_, temperature_, top_p_, max_tokens_, spoken_)
        yield from self.reply(request, browser_id, conversation_id, values, self.service.edit, index, str(value or ""))

    def on_edit_api(
        self,
        browser_id,
        conversation_id,
        index,
        text,
        model_,
        system_,
        temperature_,
        top_p_,
        max_tokens_,
        spoken_,
        request: gr.Request,
    ):
        """Edit the user message at chat position `index` and reply again (for API clients)."""
        values = (model_, system_, temperature_, top_p_, max_tokens_, spoken_)
        yield from self.reply(
            request, browser_id, conversation_id, values, self.service.edit, int(index), str(text or "")
        )

    # ------------------------------------------------------------------------- the light events

    def on_stop(self, browser_id, conversation_id, request: gr.Request):
        """Stop the reply being generated; it is kept as shown, marked interrupted."""
        key = user_key(request, browser_id)
        self.service.stop(session(request))
        return self.service.view(key, conversation_id)

    def on_undo(self, browser_id, conversation_id, request: gr.Request):
        """Remove the last message and its reply; the message goes back into the box."""
        messages, restored = self.service.undo(user_key(request, browser_id), conversation_id)
        return messages, restored if restored is not None else gr.skip()

    def on_like(self, browser_id, conversation_id, like: gr.LikeData, request: gr.Request):
        index = like.index if isinstance(like.index, int) else like.index[0]
        self.service.feedback(user_key(request, browser_id), conversation_id, index, like.liked)

    def on_feedback_api(self, browser_id, conversation_id, index, value, request: gr.Request) -> bool:
        """Like ("like"), dislike ("dislike") or clear ("") the reply at chat position `index`."""
        liked = {"like": True, "dislike": False}.get(str(value).lower())
        return self.service.feedback(user_key(request, browser_id), conversation_id, int(index), liked)

    def on_select(self, browser_id, conversation_id, selected: gr.SelectData, request: gr.Request):
        index = selected.index if isinstance(selected.index, int) else selected.index[0]
        return report_values(self.service.report(user_key(request, browser_id), conversation_id, index))

    def on_report(self, browser_id, conversation_id, request: gr.Request):
        """What the model saw and heard for the latest reply (Markdown, images, audio)."""
        return report_values(self.service.report(user_key(request, browser_id), conversation_id))

    def on_reply_report(self, browser_id, conversation_id, ready, request: gr.Request):
        """After a reply event: the report its turn made (no second look at the store), or, when the
        event was stopped before its end, the stored one."""
        return tuple(ready) if ready is not None else self.on_report(browser_id, conversation_id, request)

    def on_model(self, name):
        """Start temperature and top-p from the chosen model's own decoding defaults."""
        chosen = self.service.default_options(name)
        return chosen.temperature, chosen.top_p

    def on_chunk(self, chunk, listener, muted, request: gr.Request):
        if listener is None:
            try:
                listener = Listener()
            except Exception as error:  # noqa: BLE001 - VAD model missing
                gr.Warning(f"Hands-free voice is not available here: {error}")
                return None, gr.skip()
        busy = self.service.running(session(request))  # heard all the same: nothing said is lost
        heard = save_heard(listener, chunk, bool(muted), busy, self.settings.scratch)
        if heard is None:
            return listener, gr.skip()
        if heard["replaces"]:  # the same thought goes on: its first part's reply ends now
            self.service.stop(session(request))
        return listener, heard

    def on_snapshot(self, snapshot, message):
        """Attach the webcam snapshot to the message being written."""
        if not snapshot:
            return gr.skip(), gr.skip()
        text, files = box_parts(message if isinstance(message, dict) else {}, snapshot)
        gr.Info("Snapshot attached to your message.")
        return {"text": text, "files": files}, None


def wire_chat(events: ChatEvents, ui: Layout) -> list:
    """Wire the chat's events; returns the reply events (what stop, new, open and delete cancel)."""
    options = [ui.model, ui.system, ui.temperature, ui.top_p, ui.max_tokens, ui.spoken]
    targets = [ui.chatbot, ui.box, ui.conversation, ui.conversations, ui.spoken_out, ui.reply_report, ui.notice]
    reply = dict(concurrency_id=REPLY_EVENTS, concurrency_limit=events.settings.concurrency, show_progress="minimal")
    turn = [ui.browser, ui.conversation]
    replies = [
        ui.box.submit(events.on_send, [*turn, ui.box, *options], targets, api_name="send", **reply),
        ui.talk.stop_recording(
            events.on_talk, [*turn, ui.box, ui.talk, *options], [*targets, ui.talk], api_name="talk", **reply
        ),
        ui.regenerate_button.click(events.on_regenerate, [*turn, *options], targets, api_name="regenerate", **reply),
        ui.chatbot.retry(events.on_regenerate, [*turn, *options], targets, api_visibility="undocumented", **reply),
        ui.chatbot.edit(events.on_edit, [*turn, *options], targets, api_visibility="undocumented", **reply),
    ]
    gr.on([], events.on_edit_api, [*turn, ui.edit_index, ui.edit_text, *options], targets, api_name="edit", **reply)
    ui.handsfree.change(
        lambda on: gr.update(visible=bool(on)), ui.handsfree, ui.live_mic, api_visibility="private", **LIGHT
    )
    ui.spoken.change(
        lambda on: gr.update(visible=bool(on)), ui.spoken, ui.spoken_out, api_visibility="private", **LIGHT
    )
    # `input`, not `change`: opening a conversation sets the model and its stored settings
    ui.model.input(events.on_model, ui.model, [ui.temperature, ui.top_p], api_visibility="private", **LIGHT)
    ui.live_mic.stream(
        events.on_chunk,
        [ui.live_mic, ui.listener, ui.mute],
        [ui.listener, ui.utterance],
        stream_every=0.5,
        time_limit=3600,
        api_visibility="private",
        concurrency_limit=None,
        show_progress="hidden",
    )
    replies.append(
        ui.utterance.change(
            events.on_utterance, [*turn, ui.box, ui.utterance, *options], targets, api_visibility="private", **reply
        )
    )
    _wire_light(events, ui, replies)
    return replies


def _wire_light(events: ChatEvents, ui: Layout, replies: list) -> None:
    turn = [ui.browser, ui.conversation]
    report = [ui.report_text, ui.report_images, ui.report_audio]
    ui.stop_button.click(events.on_stop, turn, [ui.chatbot], cancels=replies, api_name="stop", **LIGHT)
    ui.box.stop(events.on_stop, turn, [ui.chatbot], cancels=replies, api_visibility="undocumented", **LIGHT)
    ui.undo_button.click(events.on_undo, turn, [ui.chatbot, ui.box], api_name="undo", **LIGHT)
    ui.chatbot.undo(events.on_undo, turn, [ui.chatbot, ui.box], api_visibility="undocumented", **LIGHT)
    ui.chatbot.like(events.on_like, turn, None, api_visibility="undocumented", **LIGHT)
    gr.on(
        [],
        events.on_feedback_api,
        [*turn, ui.edit_index, ui.feedback_value],
        ui.feedback_done,
        api_name="feedback",
        **LIGHT,
    )
    ui.chatbot.select(events.on_select, turn, report, api_visibility="undocumented", **LIGHT)
    for event in replies:
        event.then(events.on_reply_report, [*turn, ui.reply_report], report, api_visibility="undocumented", **LIGHT)
    gr.on([], events.on_report, turn, report, api_name="report", **LIGHT)
    ui.camera.input(
        events.on_snapshot, [ui.camera, ui.box], [ui.box, ui.camera], api_visibility="undocumented", **LIGHT
    )
