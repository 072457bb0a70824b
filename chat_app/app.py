"""The web app: Gradio 6 Blocks wired to `ChatService` (chat_app/handlers.py).

    demo = build_app(backend, store, settings)          # a Backend, or {name: Backend}
    demo.queue(**queue_options(settings)).launch(**launch_options(settings))

The page is laid out in chat_app/layout.py (components only); chat_app/events.py wires the
chat (every reply event through one path) and chat_app/sidebar.py the conversation list.
Who is who (a login, or an id the browser keeps) is chat_app/identity.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gradio as gr

from chat_app.browser import PAGE_JS
from chat_app.events import ChatEvents, wire_chat
from chat_app.handlers import ChatService
from chat_app.identity import user_key
from chat_app.layout import build_layout
from chat_app.settings import Settings
from chat_app.sidebar import SidebarEvents, wire_load, wire_sidebar
from chat_app.speech import Speech
from chat_app.store import ConversationStore

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CSS = ASSETS / "app.css"


def queue_options(settings: Settings) -> dict:
    return {"default_concurrency_limit": settings.concurrency}


def launch_options(settings: Settings) -> dict:
    """Arguments for `demo.launch`: CSS, the page's JavaScript, theme, upload size, where media
    may be served from."""
    return {
        "css_paths": [CSS] if CSS.is_file() else None,
        "js": PAGE_JS,
        "theme": gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
        "max_file_size": settings.transport_limit_bytes,
        "allowed_paths": [str(settings.view_dir), str(settings.scratch_dir)],
        "show_error": True,
    }


def build_app(backend, store: ConversationStore, settings: Settings, speech: Speech | None = None) -> gr.Blocks:
    """The chat app for one or several backends (a Backend or a {name: Backend} mapping)."""
    backends = dict(backend) if isinstance(backend, Mapping) else {backend.name: backend}
    service = ChatService(store, backends, settings, speech)
    with gr.Blocks(title=settings.title, fill_height=True, delete_cache=(3600, 24 * 3600)) as demo:
        ui = build_layout(settings, list(backends), service.default_options())
        sidebar = SidebarEvents(service)
        wire_load(sidebar, demo, ui)
        replies = wire_chat(ChatEvents(service, settings, ui), ui)
        wire_sidebar(sidebar, ui, replies)
    demo.chat_service = service  # for tests and launch wiring
    return demo


__all__ = ["build_app", "launch_options", "queue_options", "user_key"]
