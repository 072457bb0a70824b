"""The web app: Gradio 6 Blocks wired to `ChatService` (chat_app/handlers.py).

    demo = build_app(backend, store, settings)          # a Backend, or {name: Backend}
    demo.queue(**queue_options(settings)).launch(**launch_options(settings))

Everything a person does is a Gradio event calling one plain handler. Events that produce a
reply (send, push-to-talk, hands-free, regenerate, edit) share one concurrency group of
`settings.concurrency` slots: the others wait in the queue and see their position. The
light events (history, stop, feedback) have no limit, so one person's long reply never
blocks another's sidebar. Every event has an `api_name`, so `gradio_client` drives the same
functions the browser does (tests/app/).

Who is who: the login name with --auth, otherwise a random id the browser keeps in its
localStorage (made by a few lines of JavaScript when the page loads, so it survives reloads
and server restarts). The page-load event hands it to the server, which keeps it in the
session's state; API clients call `/load` with an id of their own first.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Mapping

import gradio as gr

from chat_app.handlers import ChatService, ChatUpdate, Options, Speech
from chat_app.handsfree import Listener
from chat_app.history import HistoryError
from chat_app.render import plain
from chat_app.settings import Settings
from chat_app.store import ConversationStore

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CSS = ASSETS / "app.css"
BROWSER_ID = re.compile(r"[0-9a-f]{32}")
REPLY_EVENTS = "reply"  # the concurrency group of the events that run the model
STORAGE_KEY = "multimodal-chat-browser-id"
# Runs in the browser before the page-load event: this browser's id from localStorage (made
# on the first visit with crypto.getRandomValues, which plain-HTTP LAN addresses also have).
IDENTITY_JS = """(given) => {
  const key = "%s";
  let id = null;
  try { id = window.localStorage.getItem(key); } catch (error) {}
  if (!/^[0-9a-f]{32}$/.test(id || "")) {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try { window.localStorage.setItem(key, id); } catch (error) {}
  }
  return [id];
}""" % STORAGE_KEY


def user_key(request: gr.Request | None, browser_id) -> str:
    """The store key of whoever sent this request."""
    if request is not None and getattr(request, "username", None):
        return f"user:{request.username}"
    if isinstance(browser_id, str) and BROWSER_ID.fullmatch(browser_id):
        return f"browser:{browser_id}"
    return f"session:{getattr(request, 'session_hash', None) or 'anonymous'}"


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "no-session"


def queue_options(settings: Settings) -> dict:
    return {"default_concurrency_limit": settings.concurrency}


def launch_options(settings: Settings) -> dict:
    """Arguments for `demo.launch`: CSS, theme, upload size, where media may be served from."""
    return {
        "css_paths": [CSS] if CSS.is_file() else None,
        "theme": gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
        "max_file_size": settings.transport_limit_bytes,
        "allowed_paths": [str(settings.view_dir), str(settings.scratch_dir)],
        "show_error": True,
    }


def build_app(backend, store: ConversationStore, settings: Settings, speech: Speech | None = None) -> gr.Blocks:
    """The chat app for one or several backends (a Backend or a {name: Backend} mapping)."""
    backends = dict(backend) if isinstance(backend, Mapping) else {backend.name: backend}
    service = ChatService(store, backends, settings, speech)
    defaults = service.default_options()
    guest = settings.guest

    def options(model, system, temperature, top_p, max_tokens, spoken) -> Options:
        return Options(model or defaults.model, system or "", temperature, top_p, max_tokens, bool(spoken))

    def chat_outputs(update: ChatUpdate, new_id: bool, key: str):
        """(chatbot, box, conversation, conversation list, spoken audio) for one update."""
        refresh = new_id or update.done or update.list_changed
        return (update.messages,
                update.box if update.box is not None else gr.skip(),
                update.conversation_id,
                gr.update(choices=service.history.choices(key), value=update.conversation_id) if refresh else gr.skip(),
                update.speech)

    def stream(updates, key):
        shown_id = object()
        for update in updates:
            yield chat_outputs(update, update.conversation_id != shown_id, key)
            shown_id = update.conversation_id

    def report_outputs(key, conversation_id, index=None):
        report = service.report(key, conversation_id, index)
        return (report.markdown, [str(p) for p in report.images] or None,
                str(report.audio[0]) if report.audio else None)

    with gr.Blocks(title=settings.title, fill_height=True, delete_cache=(3600, 24 * 3600)) as demo:
        browser = gr.State(None)  # this browser's id, set by the page-load event
        browser_id = gr.Textbox(visible=False)
        conversation = gr.State(None)
        listener = gr.State(None)
        utterance = gr.State(None)

        with gr.Sidebar(label="Conversations", open=True, width=300, elem_id="sidebar"):
            identity = gr.Markdown(elem_id="identity")
            new_button = gr.Button("✚ New conversation", variant="primary", elem_id="new")
            search = gr.Textbox(placeholder="Search your conversations", show_label=False, elem_id="search",
                                max_lines=1)
            conversations = gr.Radio(choices=[], label="Your conversations", elem_id="conversations",
                                     show_label=False)
            with gr.Accordion("Rename, delete, export, import", open=False, elem_id="manage"):
                title = gr.Textbox(label="Title", max_lines=1, elem_id="title")
                rename_button = gr.Button("Rename", size="sm", elem_id="rename")
                delete_button = gr.Button("Delete this conversation", size="sm", variant="stop", elem_id="delete")
                confirm_delete = gr.Button("Yes, delete it for good", size="sm", variant="stop", visible=False,
                                           elem_id="confirm-delete")
                with gr.Row():
                    export_button = gr.Button("Export this", size="sm", elem_id="export")
                    export_all_button = gr.Button("Export all", size="sm", elem_id="export-all")
                exported = gr.File(label="Export", visible=False, elem_id="exported")
                import_button = gr.UploadButton("Import a .zip export", file_types=[".zip"], size="sm",
                                                elem_id="import")

        with gr.Column(scale=1, elem_id="main"):
            if guest:
                turns = f"{guest.turns_per_hour} message{'s' if guest.turns_per_hour != 1 else ''}"
                gr.Markdown(f"⚠️ Shared guest session: at most {turns} an hour and "
                            f"{min(settings.max_upload_mb, guest.max_upload_mb):g} MB per file.",
                            elem_id="guest-banner")
            chatbot = gr.Chatbot(
                elem_id="chat", show_label=False, scale=1, min_height=320, height="60vh", editable="user",
                buttons=["copy", "copy_all"], sanitize_html=True, allow_tags=False, render_markdown=True,
                latex_delimiters=[], feedback_options=("Like", "Dislike"), layout="bubble",
                placeholder="**Ask anything.** Type, attach or paste pictures and sounds, take a webcam snapshot, "
                            "or talk with the microphone.")
            box = gr.MultimodalTextbox(
                elem_id="box", show_label=False, file_count="multiple", sources=["upload"],
                placeholder="Message (Enter sends, Shift+Enter for a new line); drop or paste pictures and sounds here",
                max_plain_text_length=10 * settings.max_message_chars, submit_btn=True, stop_btn=True,
                autofocus=True, max_lines=12)
            with gr.Row(equal_height=True, elem_id="controls"):
                stop_button = gr.Button("⏹ Stop", size="sm", elem_id="stop")
                regenerate_button = gr.Button("↻ Regenerate", size="sm", elem_id="regenerate")
                undo_button = gr.Button("↶ Undo", size="sm", elem_id="undo")
                clear_button = gr.Button("✚ Clear (new chat)", size="sm", elem_id="clear")
            with gr.Row(equal_height=False, elem_id="media"):
                talk = gr.Audio(sources=["microphone"], type="filepath", elem_id="talk", show_label=True,
                                label="🎤 Push to talk: record, then stop to send", editable=False,
                                buttons=[])
                camera = gr.Image(sources=["webcam"], type="filepath", elem_id="camera", show_label=True,
                                  label="📷 Webcam: a snapshot is attached to your message", height=200,
                                  buttons=[])
            spoken_out = gr.Audio(streaming=True, autoplay=True, interactive=False, visible=defaults.spoken,
                                  label="🔊 Spoken reply", elem_id="spoken", buttons=[])
            with gr.Accordion("🎙 Hands-free voice", open=False, elem_id="handsfree-panel"):
                with gr.Row():
                    handsfree = gr.Checkbox(label="Hands-free: talk, pause, and it sends", elem_id="handsfree")
                    mute = gr.Checkbox(label="Mute", elem_id="mute")
                live_mic = gr.Audio(sources=["microphone"], streaming=True, visible=False, elem_id="live-mic",
                                    label="Listening (start the microphone once)")
            with gr.Accordion("🔎 What the model saw and heard", open=False, elem_id="report-panel"):
                report_text = gr.Markdown(elem_id="report")
                with gr.Row():
                    report_images = gr.Gallery(label="Images as sent", height=180, columns=4, elem_id="report-images",
                                               buttons=[], allow_preview=True)
                    report_audio = gr.Audio(label="Audio as sent", interactive=False, elem_id="report-audio",
                                            buttons=["download"])
            with gr.Accordion("⚙ Settings", open=False, elem_id="settings"):
                model = gr.Dropdown(choices=list(backends), value=defaults.model, label="Model", elem_id="model")
                system = gr.Textbox(label="System prompt", value=defaults.system_prompt, lines=2, elem_id="system")
                with gr.Row():
                    temperature = gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="Temperature",
                                            elem_id="temperature")
                    top_p = gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p", elem_id="top-p")
                    max_tokens = gr.Slider(16, 4096, value=defaults.max_new_tokens, step=16, label="Max tokens",
                                           elem_id="max-tokens")
                spoken = gr.Checkbox(value=defaults.spoken, label="Spoken replies (sentence by sentence)",
                                     elem_id="spoken-toggle")

        option_inputs = [model, system, temperature, top_p, max_tokens, spoken]
        chat_targets = [chatbot, box, conversation, conversations, spoken_out]
        report_targets = [report_text, report_images, report_audio]
        reply_event = dict(concurrency_id=REPLY_EVENTS, concurrency_limit=settings.concurrency,
                           show_progress="minimal")
        light = dict(concurrency_limit=None, show_progress="hidden")

        # ----------------------------------------------------------------- page load
        def on_load(browser_id, request: gr.Request):
            if not (request.username or (isinstance(browser_id, str) and BROWSER_ID.fullmatch(browser_id))):
                browser_id = uuid.uuid4().hex
            key = user_key(request, browser_id)
            opened = service.history.latest(key)
            who = (f"Signed in as **{plain(request.username)}**: your conversations follow your login."
                   if request.username else
                   "Your conversations are kept for this browser (no login).")
            return (browser_id, opened.id if opened else None,
                    gr.update(value=opened.messages, feedback_value=opened.feedback) if opened else [],
                    gr.update(choices=service.history.choices(key), value=opened.id if opened else None),
                    opened.title if opened else "", who, *report_outputs(key, opened.id if opened else None))

        demo.load(on_load, [browser_id], [browser, conversation, chatbot, conversations, title, identity,
                                          *report_targets], api_name="load", js=IDENTITY_JS, **light)

        # ----------------------------------------------------------------- sending
        def on_send(browser_id, conversation_id, message, model_, system_, temperature_, top_p_, max_tokens_,
                    spoken_, request: gr.Request):
            """Send the message box (text and files); streams (chat, box, conversation id, list, speech)."""
            key = user_key(request, browser_id)
            message = message if isinstance(message, dict) else {"text": str(message or "")}
            yield from stream(service.send(key, conversation_id, message.get("text") or "", message.get("files") or [],
                                           options(model_, system_, temperature_, top_p_, max_tokens_, spoken_),
                                           _session(request)), key)

        send_event = box.submit(on_send, [browser, conversation, box, *option_inputs], chat_targets,
                                api_name="send", **reply_event)

        def on_talk(browser_id, conversation_id, message, recording, model_, system_, temperature_, top_p_,
                    max_tokens_, spoken_, request: gr.Request):
            """Push-to-talk: send the recording with whatever is in the message box."""
            key = user_key(request, browser_id)
            if not recording:
                return
            message = message if isinstance(message, dict) else {}
            files = list(message.get("files") or []) + [recording]
            first = True
            for outputs in stream(service.send(key, conversation_id, message.get("text") or "", files,
                                               options(model_, system_, temperature_, top_p_, max_tokens_, spoken_),
                                               _session(request)), key):
                yield (*outputs, None if first else gr.skip())
                first = False

        talk_event = talk.stop_recording(on_talk, [browser, conversation, box, talk, *option_inputs],
                                         [*chat_targets, talk], api_name="talk", **reply_event)

        def on_regenerate(browser_id, conversation_id, model_, system_, temperature_, top_p_, max_tokens_,
                          spoken_, request: gr.Request):
            key = user_key(request, browser_id)
            yield from stream(service.regenerate(key, conversation_id,
                                                 options(model_, system_, temperature_, top_p_, max_tokens_, spoken_),
                                                 _session(request)), key)

        regenerate_event = regenerate_button.click(on_regenerate, [browser, conversation, *option_inputs],
                                                   chat_targets, api_name="regenerate", **reply_event)
        retry_event = chatbot.retry(on_regenerate, [browser, conversation, *option_inputs], chat_targets,
                                    api_visibility="undocumented", **reply_event)

        def on_edit(browser_id, conversation_id, model_, system_, temperature_, top_p_, max_tokens_, spoken_,
                    edit: gr.EditData, request: gr.Request):
            key = user_key(request, browser_id)
            value = edit.value
            if isinstance(value, list):  # [{"type": "text", "text": ...}, files...]
                value = " ".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
            index = edit.index if isinstance(edit.index, int) else edit.index[0]
            yield from stream(service.edit(key, conversation_id, index, str(value or ""),
                                           options(model_, system_, temperature_, top_p_, max_tokens_, spoken_),
                                           _session(request)), key)

        edit_event = chatbot.edit(on_edit, [browser, conversation, *option_inputs], chat_targets,
                                  api_visibility="undocumented", **reply_event)

        def on_edit_api(browser_id, conversation_id, index, text, model_, system_, temperature_, top_p_,
                        max_tokens_, spoken_, request: gr.Request):
            """Edit the user message at chat position `index` and reply again (for API clients)."""
            key = user_key(request, browser_id)
            yield from stream(service.edit(key, conversation_id, int(index), str(text or ""),
                                           options(model_, system_, temperature_, top_p_, max_tokens_, spoken_),
                                           _session(request)), key)

        edit_index = gr.Number(visible=False, precision=0)
        edit_text = gr.Textbox(visible=False)
        gr.on([], on_edit_api, [browser, conversation, edit_index, edit_text, *option_inputs], chat_targets,
              api_name="edit", **reply_event)

        # ----------------------------------------------------------------- hands-free
        handsfree.change(lambda on: gr.update(visible=bool(on)), handsfree, live_mic, api_visibility="private",
                         **light)
        spoken.change(lambda on: gr.update(visible=bool(on)), spoken, spoken_out, api_visibility="private", **light)

        # ----------------------------------------------------------------- settings
        def on_model(name):
            """Start temperature and top-p from the chosen model's own decoding defaults."""
            chosen = service.default_options(name)
            return chosen.temperature, chosen.top_p

        # `input`, not `change`: opening a conversation sets the model and its stored settings
        model.input(on_model, model, [temperature, top_p], api_visibility="private", **light)

        def on_chunk(chunk, state, muted, request: gr.Request):
            if state is None:
                try:
                    state = Listener()
                except Exception as error:  # noqa: BLE001 - VAD model missing
                    gr.Warning(f"Hands-free voice is not available here: {error}")
                    return None, gr.skip()
            if chunk is None:
                return state, gr.skip()
            if muted or service.running(_session(request)):
                state.reset()  # muted, or the reply is playing: do not hear ourselves
                return state, gr.skip()
            rate, samples = chunk
            wav = state.push(rate, samples)
            if wav is None:
                return state, gr.skip()
            path = settings.scratch("voice-") / "utterance.wav"
            path.write_bytes(wav)
            return state, str(path)

        live_mic.stream(on_chunk, [live_mic, listener, mute], [listener, utterance], stream_every=0.5,
                        time_limit=3600, api_visibility="private", concurrency_limit=None, show_progress="hidden")

        def on_utterance(browser_id, conversation_id, message, path, model_, system_, temperature_, top_p_,
                         max_tokens_, spoken_, request: gr.Request):
            if not path:
                return
            key = user_key(request, browser_id)
            message = message if isinstance(message, dict) else {}
            files = list(message.get("files") or []) + [path]
            yield from stream(service.send(key, conversation_id, message.get("text") or "", files,
                                           options(model_, system_, temperature_, top_p_, max_tokens_, spoken_),
                                           _session(request)), key)

        voice_event = utterance.change(on_utterance, [browser, conversation, box, utterance, *option_inputs],
                                       chat_targets, api_visibility="private", **reply_event)

        reply_events = [send_event, talk_event, regenerate_event, retry_event, edit_event, voice_event]

        # ----------------------------------------------------------------- stop, undo, feedback
        def on_stop(browser_id, conversation_id, request: gr.Request):
            """Stop the reply being generated; it is kept as shown, marked interrupted."""
            key = user_key(request, browser_id)
            service.stop(_session(request))
            return service.view(key, conversation_id)

        stop_button.click(on_stop, [browser, conversation], [chatbot], cancels=reply_events, api_name="stop", **light)
        box.stop(on_stop, [browser, conversation], [chatbot], cancels=reply_events, api_visibility="undocumented",
                 **light)

        def on_undo(browser_id, conversation_id, request: gr.Request):
            """Remove the last message and its reply; the message goes back into the box."""
            key = user_key(request, browser_id)
            messages, restored = service.undo(key, conversation_id)
            return messages, restored if restored is not None else gr.skip()

        undo_button.click(on_undo, [browser, conversation], [chatbot, box], api_name="undo", **light)
        chatbot.undo(on_undo, [browser, conversation], [chatbot, box], api_visibility="undocumented", **light)

        def on_like(browser_id, conversation_id, like: gr.LikeData, request: gr.Request):
            index = like.index if isinstance(like.index, int) else like.index[0]
            service.feedback(user_key(request, browser_id), conversation_id, index, like.liked)

        chatbot.like(on_like, [browser, conversation], None, api_visibility="undocumented", **light)

        def on_feedback_api(browser_id, conversation_id, index, value, request: gr.Request) -> bool:
            """Like ("like"), dislike ("dislike") or clear ("") the reply at chat position `index`."""
            liked = {"like": True, "dislike": False}.get(str(value).lower())
            return service.feedback(user_key(request, browser_id), conversation_id, int(index), liked)

        feedback_value = gr.Textbox(visible=False)
        feedback_done = gr.Checkbox(visible=False)
        gr.on([], on_feedback_api, [browser, conversation, edit_index, feedback_value], feedback_done,
              api_name="feedback", **light)

        def on_select(browser_id, conversation_id, selected: gr.SelectData, request: gr.Request):
            index = selected.index if isinstance(selected.index, int) else selected.index[0]
            return report_outputs(user_key(request, browser_id), conversation_id, index)

        chatbot.select(on_select, [browser, conversation], report_targets, api_visibility="undocumented", **light)

        def on_report(browser_id, conversation_id, request: gr.Request):
            """What the model saw and heard for the latest reply (Markdown, images, audio)."""
            return report_outputs(user_key(request, browser_id), conversation_id)

        for event in reply_events:
            event.then(on_report, [browser, conversation], report_targets, api_visibility="undocumented", **light)
        gr.on([], on_report, [browser, conversation], report_targets, api_name="report", **light)

        # ----------------------------------------------------------------- history
        def on_new(browser_id, request: gr.Request):
            """Start a new, empty conversation (the current one stays in the list)."""
            key = user_key(request, browser_id)
            service.stop(_session(request))
            return (None, [], gr.update(choices=service.history.choices(key), value=None), "",
                    *report_outputs(key, None))

        new_targets = [conversation, chatbot, conversations, title, *report_targets]
        new_button.click(on_new, [browser], new_targets, api_name="new", cancels=reply_events, **light)
        clear_button.click(on_new, [browser], new_targets, api_visibility="undocumented", cancels=reply_events,
                           **light)
        chatbot.clear(on_new, [browser], new_targets, api_visibility="undocumented", cancels=reply_events, **light)

        settings_targets = [model, system, temperature, top_p, max_tokens]

        def settings_outputs(opened) -> tuple:
            if opened is None or not opened.settings:
                return tuple(gr.skip() for _ in settings_targets)
            s = opened.settings
            return (opened.model if opened.model in backends else gr.skip(), s.get("system_prompt", gr.skip()),
                    s.get("temperature", gr.skip()), s.get("top_p", gr.skip()), s.get("max_new_tokens", gr.skip()))

        def on_open(browser_id, conversation_id, request: gr.Request):
            """Open one of your conversations by id."""
            key = user_key(request, browser_id)
            service.stop(_session(request))
            opened = service.history.open(key, conversation_id)
            if opened is None:
                gr.Warning("That conversation was not found; it may have been deleted.")
                return (None, [], gr.update(choices=service.history.choices(key), value=None), "",
                        *report_outputs(key, None), *settings_outputs(None))
            return (opened.id, gr.update(value=opened.messages, feedback_value=opened.feedback), gr.skip(),
                    opened.title, *report_outputs(key, opened.id), *settings_outputs(opened))

        conversations.input(on_open, [browser, conversations], [*new_targets, *settings_targets],
                            api_visibility="undocumented", cancels=reply_events, **light)
        open_id = gr.Textbox(visible=False)
        gr.on([], on_open, [browser, open_id], [*new_targets, *settings_targets], api_name="open", **light)

        def on_search(browser_id, query, conversation_id, request: gr.Request):
            """Your conversations whose messages match `query` (all of them when empty)."""
            key = user_key(request, browser_id)
            choices = service.history.search(key, query or "")
            value = conversation_id if any(c[1] == conversation_id for c in choices) else None
            return gr.update(choices=choices, value=value,
                             label=f"Matches for “{query.strip()}”" if query and query.strip()
                             else "Your conversations")

        search.change(on_search, [browser, search, conversation], [conversations], api_name="search",
                      trigger_mode="always_last", **light)

        def on_rename(browser_id, conversation_id, new_title, request: gr.Request):
            """Rename the open conversation."""
            key = user_key(request, browser_id)
            try:
                service.history.rename(key, conversation_id, new_title or "")
            except HistoryError as error:
                gr.Warning(str(error))
                return gr.skip()
            return gr.update(choices=service.history.choices(key), value=conversation_id)

        rename_button.click(on_rename, [browser, conversation, title], [conversations], api_name="rename", **light)
        title.submit(on_rename, [browser, conversation, title], [conversations], api_visibility="undocumented",
                     **light)

        delete_button.click(lambda: (gr.update(visible=False), gr.update(visible=True)), None,
                            [delete_button, confirm_delete], api_visibility="private", **light)

        def on_delete(browser_id, conversation_id, request: gr.Request):
            """Delete the open conversation for good, then show the most recent one left."""
            key = user_key(request, browser_id)
            service.stop(_session(request))
            try:
                service.history.delete(key, conversation_id)
                gr.Info("Conversation deleted.")
            except HistoryError as error:
                gr.Warning(str(error))
            opened = service.history.latest(key)
            return (opened.id if opened else None, opened.messages if opened else [],
                    gr.update(choices=service.history.choices(key), value=opened.id if opened else None),
                    opened.title if opened else "", *report_outputs(key, opened.id if opened else None),
                    gr.update(visible=True), gr.update(visible=False))

        confirm_delete.click(on_delete, [browser, conversation], [*new_targets, delete_button, confirm_delete],
                             api_name="delete", cancels=reply_events, **light)

        def on_export(browser_id, conversation_id, request: gr.Request):
            """A zip of the open conversation (text, images, audio, settings)."""
            try:
                path = service.history.export(user_key(request, browser_id), conversation_id)
            except HistoryError as error:
                gr.Warning(str(error))
                return gr.update(visible=False, value=None)
            return gr.update(visible=True, value=str(path))

        export_button.click(on_export, [browser, conversation], [exported], api_name="export", **light)

        def on_export_all(browser_id, request: gr.Request):
            """A zip of all your conversations."""
            try:
                path = service.history.export(user_key(request, browser_id), None)
            except HistoryError as error:
                gr.Warning(str(error))
                return gr.update(visible=False, value=None)
            return gr.update(visible=True, value=str(path))

        export_all_button.click(on_export_all, [browser], [exported], api_name="export_all", **light)

        def on_import(browser_id, upload, request: gr.Request):
            """Add the conversations of an export zip to yours."""
            key = user_key(request, browser_id)
            path = upload if isinstance(upload, str) else getattr(upload, "name", None)
            try:
                said = service.history.import_zip(key, path)
                gr.Info(said)
            except HistoryError as error:
                gr.Warning(str(error))
                said = str(error)
            return gr.update(choices=service.history.choices(key)), said

        import_result = gr.Textbox(visible=False)
        import_button.upload(on_import, [browser, import_button], [conversations, import_result],
                             api_name="import", **light)

        # ----------------------------------------------------------------- webcam
        def on_snapshot(snapshot, message):
            """Attach the webcam snapshot to the message being written."""
            if not snapshot:
                return gr.skip(), gr.skip()
            message = message if isinstance(message, dict) else {}
            files = list(message.get("files") or []) + [snapshot]
            gr.Info("Snapshot attached to your message.")
            return {"text": message.get("text") or "", "files": files}, None

        camera.input(on_snapshot, [camera, box], [box, camera], api_visibility="undocumented", **light)

    demo.chat_service = service  # for tests and launch wiring
    return demo


__all__ = ["build_app", "launch_options", "queue_options", "user_key"]
