"""The page: every Gradio component, placed; no logic (chat_app/events.py and
chat_app/sidebar.py wire them to the handlers).

    with gr.Blocks() as demo:
        ui = build_layout(settings, models=["builtin"], defaults=Options())
        ui.chatbot, ui.box, ui.conversations, …                # the components, by name
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from chat_app.settings import Settings
from chat_app.speech import let_the_audio_encoder_start
from chat_app.updates import Options


class Layout(SimpleNamespace):
    """The components of one page, as attributes (see `build_layout` for the names)."""


def build_layout(settings: Settings, models: list[str], defaults: Options) -> Layout:
    """Create the page's components inside the open gr.Blocks."""
    ui = Layout()
    ui.browser = gr.State(None)  # this browser's id, set by the page-load event
    ui.browser_id = gr.Textbox(visible=False)
    ui.conversation = gr.State(None)
    ui.listener = gr.State(None)  # hands-free: this browser's chat_app.handsfree.Listener
    ui.utterance = gr.State(None)  # hands-free: the last turn heard, {"path", "replaces"}
    ui.reply_report = gr.State(None)  # the report the last reply event computed, for its report panel
    _sidebar(ui)
    with gr.Column(scale=1, elem_id="main"):
        _chat(ui, settings)
        _voice(ui, defaults)
        _report(ui)
        _settings(ui, models, defaults)
    # inputs and outputs of API-only events
    ui.edit_index = gr.Number(visible=False, precision=0)
    ui.edit_text = gr.Textbox(visible=False)
    ui.feedback_value = gr.Textbox(visible=False)
    ui.feedback_done = gr.Checkbox(visible=False)
    ui.open_id = gr.Textbox(visible=False)
    ui.import_result = gr.Textbox(visible=False)
    return ui


def _sidebar(ui: Layout) -> None:
    with gr.Sidebar(label="Conversations", open=True, width=300, elem_id="sidebar"):
        ui.identity = gr.Markdown(elem_id="identity")
        ui.new_button = gr.Button("✚ New conversation", variant="primary", elem_id="new")
        ui.search = gr.Textbox(placeholder="Search your conversations", show_label=False, elem_id="search", max_lines=1)
        ui.conversations = gr.Radio(choices=[], label="Your conversations", elem_id="conversations", show_label=False)
        with gr.Accordion("Rename, delete, export, import", open=False, elem_id="manage"):
            ui.title = gr.Textbox(label="Title", max_lines=1, elem_id="title")
            ui.rename_button = gr.Button("Rename", size="sm", elem_id="rename")
            ui.delete_button = gr.Button("Delete this conversation", size="sm", variant="stop", elem_id="delete")
            ui.confirm_delete = gr.Button(
                "Yes, delete it for good", size="sm", variant="stop", visible=False, elem_id="confirm-delete"
            )
            with gr.Row():
                ui.export_button = gr.Button("Export this", size="sm", elem_id="export")
                ui.export_all_button = gr.Button("Export all", size="sm", elem_id="export-all")
            ui.exported = gr.File(label="Export", visible=False, elem_id="exported")
            ui.import_button = gr.UploadButton("Import a .zip export", file_types=[".zip"], size="sm", elem_id="import")


def _chat(ui: Layout, settings: Settings) -> None:
    guest = settings.guest
    if guest:
        turns = f"{guest.turns_per_hour} message{'s' if guest.turns_per_hour != 1 else ''}"
        gr.Markdown(
            f"⚠️ Shared guest session: at most {turns} an hour and "
            f"{min(settings.max_upload_mb, guest.max_upload_mb):g} MB per file.",
            elem_id="guest-banner",
        )
    ui.chatbot = gr.Chatbot(
        elem_id="chat",
        show_label=False,
        scale=1,
        min_height=320,
        height="60vh",
        editable="user",
        buttons=["copy", "copy_all"],
        sanitize_html=True,
        allow_tags=False,
        render_markdown=True,
        latex_delimiters=[],
        feedback_options=("Like", "Dislike"),
        layout="bubble",
        placeholder="**Ask anything.** Type, attach or paste pictures and sounds, take a webcam snapshot, "
        "or talk with the microphone.",
    )
    # the app's own words (bad input, a failure, nothing heard): apart from the model's replies
    ui.notice = gr.Markdown(visible=False, elem_id="notice")
    ui.box = gr.MultimodalTextbox(
        elem_id="box",
        show_label=False,
        file_count="multiple",
        sources=["upload"],
        placeholder="Message (Enter sends, Shift+Enter for a new line); drop or paste pictures and sounds here",
        max_plain_text_length=10 * settings.max_message_chars,
        submit_btn=True,
        stop_btn=True,
        autofocus=True,
        max_lines=12,
    )
    with gr.Row(equal_height=True, elem_id="controls"):
        ui.stop_button = gr.Button("⏹ Stop", size="sm", elem_id="stop")
        ui.regenerate_button = gr.Button("↻ Regenerate", size="sm", elem_id="regenerate")
        ui.undo_button = gr.Button("↶ Undo", size="sm", elem_id="undo")
        ui.clear_button = gr.Button("✚ Clear (new chat)", size="sm", elem_id="clear")
    with gr.Row(equal_height=False, elem_id="media"):
        ui.talk = gr.Audio(
            sources=["microphone"],
            type="filepath",
            elem_id="talk",
            show_label=True,
            label="🎤 Push to talk: record, then stop to send",
            editable=False,
            buttons=[],
        )
        ui.camera = gr.Image(
            sources=["webcam"],
            type="filepath",
            elem_id="camera",
            show_label=True,
            label="📷 Webcam: a snapshot is attached to your message",
            height=200,
            buttons=[],
            # Gradio mirrors the captured frame along with the preview; the preview is mirrored
            # by assets/app.css instead, so the picture sent reads the right way round.
            webcam_options=gr.WebcamOptions(mirror=False),
        )


def _voice(ui: Layout, defaults: Options) -> None:
    let_the_audio_encoder_start()  # each spoken reply's stream opens with its first sound
    ui.spoken_out = gr.Audio(
        streaming=True,
        autoplay=True,
        interactive=False,
        visible=defaults.spoken,
        label="🔊 Spoken reply",
        elem_id="spoken",
        buttons=[],
    )
    with gr.Accordion("🎙 Hands-free voice", open=False, elem_id="handsfree-panel"):
        with gr.Row():
            ui.handsfree = gr.Checkbox(label="Hands-free: talk, pause, and it sends", elem_id="handsfree")
            ui.mute = gr.Checkbox(label="Mute", elem_id="mute")
        ui.live_mic = gr.Audio(
            sources=["microphone"],
            streaming=True,
            visible=False,
            elem_id="live-mic",
            label="Listening (start the microphone once)",
        )


def _report(ui: Layout) -> None:
    with gr.Accordion("🔎 What the model saw and heard", open=False, elem_id="report-panel"):
        ui.report_text = gr.Markdown(elem_id="report")
        with gr.Row():
            ui.report_images = gr.Gallery(
                label="Images as sent", height=180, columns=4, elem_id="report-images", buttons=[], allow_preview=True
            )
            ui.report_audio = gr.Audio(
                label="Audio as sent", interactive=False, elem_id="report-audio", buttons=["download"]
            )


def _settings(ui: Layout, models: list[str], defaults: Options) -> None:
    with gr.Accordion("⚙ Settings", open=False, elem_id="settings"):
        ui.model = gr.Dropdown(choices=models, value=defaults.model, label="Model", elem_id="model")
        ui.system = gr.Textbox(label="System prompt", value=defaults.system_prompt, lines=2, elem_id="system")
        with gr.Row():
            ui.temperature = gr.Slider(
                0.0, 2.0, value=defaults.temperature, step=0.05, label="Temperature", elem_id="temperature"
            )
            ui.top_p = gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p", elem_id="top-p")
            ui.max_tokens = gr.Slider(
                16, 4096, value=defaults.max_new_tokens, step=16, label="Max tokens", elem_id="max-tokens"
            )
        ui.spoken = gr.Checkbox(
            value=defaults.spoken, label="Spoken replies (sentence by sentence)", elem_id="spoken-toggle"
        )
