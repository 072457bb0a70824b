"""The sidebar's events (and the page load): a person's conversations — new, open, search,
rename, delete, export, import — wired to `chat_app.history.History`. None of them has a
concurrency limit, so one person's long reply never blocks another's sidebar; the ones that
leave the open conversation (new, open, delete) stop its reply first.
"""

from __future__ import annotations

import uuid

import gradio as gr

from chat_app.events import LIGHT, report_values
from chat_app.handlers import ChatService
from chat_app.history import HistoryError, Opened
from chat_app.identity import BROWSER_ID, IDENTITY_JS, session, user_key
from chat_app.layout import Layout
from chat_app.render import plain


class SidebarEvents:
    """The sidebar's Gradio handlers over one ChatService."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.history = service.history

    def report(self, key: str, conversation_id: str | None) -> tuple:
        return report_values(self.service.report(key, conversation_id))

    def on_load(self, browser_id, request: gr.Request):
        if not (request.username or (isinstance(browser_id, str) and BROWSER_ID.fullmatch(browser_id))):
            browser_id = uuid.uuid4().hex
        key = user_key(request, browser_id)
        opened = self.history.latest(key)
        who = (
            f"Signed in as **{plain(request.username)}**: your conversations follow your login."
            if request.username
            else "Your conversations are kept for this browser (no login)."
        )
        return (
            browser_id,
            opened.id if opened else None,
            gr.update(value=opened.messages, feedback_value=opened.feedback) if opened else [],
            gr.update(choices=self.history.choices(key), value=opened.id if opened else None),
            opened.title if opened else "",
            who,
            *self.report(key, opened.id if opened else None),
        )

    def on_new(self, browser_id, request: gr.Request):
        """Start a new, empty conversation (the current one stays in the list)."""
        key = user_key(request, browser_id)
        self.service.stop(session(request))
        return (None, [], gr.update(choices=self.history.choices(key), value=None), "", *self.report(key, None))

    def settings_values(self, opened: Opened | None) -> tuple:
        """(model, system prompt, temperature, top-p, max tokens) as the conversation last used them."""
        if opened is None or not opened.settings:
            return tuple(gr.skip() for _ in range(5))
        s = opened.settings
        return (
            opened.model if opened.model in self.service.backends else gr.skip(),
            s.get("system_prompt", gr.skip()),
            s.get("temperature", gr.skip()),
            s.get("top_p", gr.skip()),
            s.get("max_new_tokens", gr.skip()),
        )

    def on_open(self, browser_id, conversation_id, request: gr.Request):
        """Open one of your conversations by id."""
        key = user_key(request, browser_id)
        self.service.stop(session(request))
        opened = self.history.open(key, conversation_id)
        if opened is None:
            gr.Warning("That conversation was not found; it may have been deleted.")
            return (
                None,
                [],
                gr.update(choices=self.history.choices(key), value=None),
                "",
                *self.report(key, None),
                *self.settings_values(None),
            )
        return (
            opened.id,
            gr.update(value=opened.messages, feedback_value=opened.feedback),
            gr.skip(),
            opened.title,
            *self.report(key, opened.id),
            *self.settings_values(opened),
        )

    def on_search(self, browser_id, query, conversation_id, request: gr.Request):
        """Your conversations whose messages match `query` (all of them when empty)."""
        choices = self.history.search(user_key(request, browser_id), query or "")
        value = conversation_id if any(c[1] == conversation_id for c in choices) else None
        return gr.update(
            choices=choices,
            value=value,
            label=f"Matches for “{query.strip()}”" if query and query.strip() else "Your conversations",
        )

    def on_rename(self, browser_id, conversation_id, new_title, request: gr.Request):
        """Rename the open conversation."""
        key = user_key(request, browser_id)
        try:
            self.history.rename(key, conversation_id, new_title or "")
        except HistoryError as error:
            gr.Warning(str(error))
            return gr.skip()
        return gr.update(choices=self.history.choices(key), value=conversation_id)

    def on_delete(self, browser_id, conversation_id, request: gr.Request):
        """Delete the open conversation for good, then show the most recent one left."""
        key = user_key(request, browser_id)
        self.service.stop(session(request))
        try:
            self.history.delete(key, conversation_id)
            gr.Info("Conversation deleted.")
        except HistoryError as error:
            gr.Warning(str(error))
        opened = self.history.latest(key)
        return (
            opened.id if opened else None,
            opened.messages if opened else [],
            gr.update(choices=self.history.choices(key), value=opened.id if opened else None),
            opened.title if opened else "",
            *self.report(key, opened.id if opened else None),
            gr.update(visible=True),
            gr.update(visible=False),
        )

    def _export(self, key: str, conversation_id: str | None):
        try:
            path = self.history.export(key, conversation_id)
        except HistoryError as error:
            gr.Warning(str(error))
            return gr.update(visible=False, value=None)
        return gr.update(visible=True, value=str(path))

    def on_export(self, browser_id, conversation_id, request: gr.Request):
        """A zip of the open conversation (text, images, audio, settings)."""
        return self._export(user_key(request, browser_id), conversation_id)

    def on_export_all(self, browser_id, request: gr.Request):
        """A zip of all your conversations."""
        return self._export(user_key(request, browser_id), None)

    def on_import(self, browser_id, upload, request: gr.Request):
        """Add the conversations of an export zip to yours."""
        key = user_key(request, browser_id)
        path = upload if isinstance(upload, str) else getattr(upload, "name", None)
        try:
            said = self.history.import_zip(key, path)
            gr.Info(said)
        except HistoryError as error:
            gr.Warning(str(error))
            said = str(error)
        return gr.update(choices=self.history.choices(key)), said


def wire_load(events: SidebarEvents, demo: gr.Blocks, ui: Layout) -> None:
    """The page load: who this is, and their latest conversation."""
    demo.load(
        events.on_load,
        [ui.browser_id],
        [
            ui.browser,
            ui.conversation,
            ui.chatbot,
            ui.conversations,
            ui.title,
            ui.identity,
            ui.report_text,
            ui.report_images,
            ui.report_audio,
        ],
        api_name="load",
        js=IDENTITY_JS,
        **LIGHT,
    )


def wire_sidebar(events: SidebarEvents, ui: Layout, replies: list) -> None:
    """Wire the sidebar; `replies` are the reply events that leaving a conversation cancels."""
    shown = [ui.conversation, ui.chatbot, ui.conversations, ui.title, ui.report_text, ui.report_images, ui.report_audio]
    settings = [ui.model, ui.system, ui.temperature, ui.top_p, ui.max_tokens]
    ui.new_button.click(events.on_new, [ui.browser], shown, api_name="new", cancels=replies, **LIGHT)
    for leave in (ui.new_button.click, ui.clear_button.click, ui.conversations.input, ui.confirm_delete.click):
        leave(lambda: gr.update(value="", visible=False), None, ui.notice, api_visibility="private", **LIGHT)
    ui.clear_button.click(events.on_new, [ui.browser], shown, api_visibility="undocumented", cancels=replies, **LIGHT)
    ui.chatbot.clear(events.on_new, [ui.browser], shown, api_visibility="undocumented", cancels=replies, **LIGHT)
    ui.conversations.input(
        events.on_open,
        [ui.browser, ui.conversations],
        [*shown, *settings],
        api_visibility="undocumented",
        cancels=replies,
        **LIGHT,
    )
    gr.on([], events.on_open, [ui.browser, ui.open_id], [*shown, *settings], api_name="open", **LIGHT)
    ui.search.change(
        events.on_search,
        [ui.browser, ui.search, ui.conversation],
        [ui.conversations],
        api_name="search",
        trigger_mode="always_last",
        **LIGHT,
    )
    rename = [ui.browser, ui.conversation, ui.title]
    ui.rename_button.click(events.on_rename, rename, [ui.conversations], api_name="rename", **LIGHT)
    ui.title.submit(events.on_rename, rename, [ui.conversations], api_visibility="undocumented", **LIGHT)
    ui.delete_button.click(
        lambda: (gr.update(visible=False), gr.update(visible=True)),
        None,
        [ui.delete_button, ui.confirm_delete],
        api_visibility="private",
        **LIGHT,
    )
    ui.confirm_delete.click(
        events.on_delete,
        [ui.browser, ui.conversation],
        [*shown, ui.delete_button, ui.confirm_delete],
        api_name="delete",
        cancels=replies,
        **LIGHT,
    )
    ui.export_button.click(events.on_export, [ui.browser, ui.conversation], [ui.exported], api_name="export", **LIGHT)
    ui.export_all_button.click(events.on_export_all, [ui.browser], [ui.exported], api_name="export_all", **LIGHT)
    ui.import_button.upload(
        events.on_import,
        [ui.browser, ui.import_button],
        [ui.conversations, ui.import_result],
        api_name="import",
        **LIGHT,
    )
