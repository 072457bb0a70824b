"""Store records → what the browser shows: chat messages, the per-turn report, list labels.

Messages are plain dicts in the format `gr.Chatbot` takes ({"role", "content": [parts]});
nothing here imports gradio. Text parts are given as {"type": "text"} dicts so Gradio
shows them exactly as written (no dedenting), after `safe_markdown`: HTML in a message is
shown as text, never run, while Markdown (bold, lists, code) still renders; Gradio's own
sanitizer is a second line of defence.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from chat_app.store import Attachment, MediaRemoved, Message, NotFound
from chat_app.uploads import EXTENSIONS

_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]+`)", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # invisible; shown as boxes otherwise
STOPPED = "⏹ *Stopped — this is the part of the reply that was shown.*"
FAILED = "⚠️ *The reply failed here.*"


def safe_markdown(text: str) -> str:
    """Escape &, < and > outside code spans and fences, so HTML shows as text (and drop
    control characters, which browsers draw as empty boxes)."""
    parts = _CODE.split(_CONTROL.sub("", text))
    return "".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))


def plain(text: str) -> str:
    """Text shown literally inside Markdown (titles, snippets, transcripts)."""
    escaped = html.escape(text, quote=False)
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", escaped)


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def file_part(path: Path, mime: str) -> dict:
    return {"type": "file", "file": {"path": str(path), "mime_type": mime, "orig_name": path.name}}


def notice_markdown(text: str | None) -> str:
    """A message from the app itself (bad input, a failure), for the notice under the chat:
    shown as written, never inside a chat bubble."""
    return f"⚠️ {plain(text)}" if text else ""


class MediaViews:
    """Stored media under names with an extension (<data_dir>/view/<sha>.<ext>), which the
    browser needs to show a picture or play a clip. Hard links where possible."""

    def __init__(self, store, view_dir: Path) -> None:
        self.store = store
        self.root = Path(view_dir)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, user_key: str, attachment: Attachment) -> Path | None:
        view = self.root / (attachment.sha256 + EXTENSIONS.get(attachment.mime, ""))
        if view.is_file():
            return view
        try:
            blob = self.store.attachment_path(user_key, attachment.id)
        except (MediaRemoved, NotFound):
            return None
        temporary = self.root / f".{attachment.sha256}.{os.getpid()}.tmp"
        try:
            try:
                os.link(blob, temporary)
            except OSError:
                shutil.copyfile(blob, temporary)
            os.replace(temporary, view)
        except FileNotFoundError:
            return None
        finally:
            temporary.unlink(missing_ok=True)
        return view

    def forget(self, sha256s) -> None:
        """Remove the views of these media (a deleted conversation's); the ones still shown
        elsewhere are made again on demand."""
        for sha in sha256s:
            for view in self.root.glob(sha + ".*"):
                view.unlink(missing_ok=True)

    def forget_unused(self, sha256s) -> None:
        """Remove the views of media the store no longer has (after undo, edit, regenerate)."""
        self.forget(sha for sha in sha256s if not self.store.blobs.exists(sha))

    def sweep(self) -> int:
        """Remove every view whose media is gone (at start-up); returns how many."""
        gone = {
            view.name.split(".")[0]
            for view in self.root.iterdir()
            if not view.name.startswith(".") and not self.store.blobs.exists(view.name.split(".")[0])
        }
        self.forget(gone)
        return len(gone)


def render_message(message: Message, views: MediaViews, user_key: str) -> dict:
    parts: list[dict] = []
    for attachment in message.attachments:
        view = views.path(user_key, attachment)
        if view is None:
            parts.append(text_part(f"*({attachment.kind} removed by the retention policy)*"))
        else:
            parts.append(file_part(view, attachment.mime))
    if message.role == "user":
        if message.text:
            parts.append(text_part(safe_markdown(message.text)))
        if message.transcript:
            parts.append(text_part(f"🎤 *“{plain(message.transcript)}”*"))
        elif any(a.kind == "audio" for a in message.attachments) and not message.text:
            parts.append(text_part("🎤 *(voice message)*"))
    else:
        text = safe_markdown(message.text)
        if message.status == "interrupted":
            text = (text + "\n\n" if text else "") + STOPPED
        elif message.status == "error":
            text = (text + "\n\n" if text else "") + FAILED
        elif message.status == "streaming":
            text = text or "…"
        else:
            text = text or "*(the model ended its reply without a word)*"
        parts.append(text_part(text))
    return {"role": message.role, "content": parts or [text_part("")]}


def render_messages(messages, views: MediaViews, user_key: str) -> list[dict]:
    return [render_message(m, views, user_key) for m in messages if m.role in ("user", "assistant")]


def live_reply(text: str) -> dict:
    """The assistant message while it streams."""
    return {"role": "assistant", "content": [text_part(safe_markdown(text) if text else "…")]}


def feedback_values(messages) -> list[str | None]:
    """gr.Chatbot's feedback_value: one entry per assistant message."""
    labels = {"like": "Like", "dislike": "Dislike"}
    return [labels.get(m.feedback) for m in messages if m.role == "assistant"]


# ----------------------------------------------------------------------------- per-turn report


@dataclass
class TurnReport:
    """What the model saw and heard for one reply, ready to show."""

    markdown: str
    images: list[Path] = field(default_factory=list)
    audio: list[Path] = field(default_factory=list)


def _settings_line(settings: dict) -> str:
    names = (("temperature", "temperature"), ("top_p", "top-p"), ("max_new_tokens", "max tokens"), ("seed", "seed"))
    return ", ".join(f"{label} {settings[key]}" for key, label in names if settings.get(key) is not None)


def turn_report(messages: tuple[Message, ...], index: int | None, views: MediaViews, user_key: str) -> TurnReport:
    """The report for the reply at `index` (the latest reply when None or not a reply)."""
    replies = [i for i, m in enumerate(messages) if m.role == "assistant"]
    if not replies:
        return TurnReport("*Nothing yet: send a message and the details of the reply appear here.*")
    if index is None or index >= len(messages):
        index = replies[-1]
    elif messages[index].role == "user":  # a question: show its reply
        later = [i for i in replies if i > index]
        index = later[0] if later else replies[-1]
    reply = messages[index]
    question = next((messages[i] for i in range(index - 1, -1, -1) if messages[i].role == "user"), None)
    settings = reply.settings or {}
    report = settings.get("report") or {}
    turn_number = sum(1 for m in messages[: index + 1] if m.role == "assistant")
    lines = [f"**Reply {turn_number}** · status *{reply.status}*"]
    images, audio = [], []
    if question is not None:
        for attachment in question.attachments:
            view = views.path(user_key, attachment)
            if view is not None:
                (images if attachment.kind == "image" else audio).append(view)
        if question.text:
            shown = question.text if len(question.text) <= 300 else question.text[:300] + "…"
            lines.append(f"- **Text**: {plain(shown)}")
        lines.append(f"- **Images**: {len(images)} · **audio clips**: {len(audio)}")
        lines.append(
            "- **Transcript**: "
            + (
                f"“{plain(question.transcript)}”"
                if question.transcript
                else ("*none (no speech recognition)*" if audio else "—")
            )
        )
    if report.get("warnings"):
        lines.append("- **Recording**: " + " ".join(plain(w) for w in report["warnings"]))
    observations = report.get("observations") or []
    lines.append("- **Observations**: " + ("; ".join(plain(o) for o in observations) if observations else "—"))
    lines.append(f"- **Model**: `{reply.model or '?'}`")
    system_prompt = settings.get("system_prompt")
    lines.append(
        "- **Settings**: "
        + (_settings_line(settings) or "—")
        + (f"; system prompt “{plain(system_prompt[:200])}”" if system_prompt else "")
    )
    first = report.get("first_token_ms")
    total, tokens = reply.latency_ms, reply.tokens
    timing = []
    if first is not None:
        timing.append(f"first token after {first:.0f} ms")
    if total is not None:
        timing.append(f"total {total / 1000:.2f} s")
    if tokens is not None:
        timing.append(f"{tokens} tokens")
        if total and first is not None and tokens > 1 and total > first:
            timing.append(f"{(tokens - 1) / ((total - first) / 1000):.1f} tokens/s")
    lines.append("- **Latency**: " + (", ".join(timing) if timing else "—"))
    prompt_tokens = report.get("prompt_tokens")
    if prompt_tokens is not None:
        dropped = report.get("dropped_turns") or 0
        lines.append(
            f"- **Prompt**: {prompt_tokens} tokens"
            + (f"; {dropped} oldest turn(s) left out to fit the context" if dropped else "")
        )
    return TurnReport("\n".join(lines), images, audio)


# ----------------------------------------------------------------------------- history list


def conversation_label(title: str) -> str:
    title = " ".join((title or "New conversation").split())
    return title if len(title) <= 60 else title[:59] + "…"


def search_label(hit) -> str:
    """One search hit as a list entry: "title — …snippet…" (plain text)."""
    return f"{conversation_label(hit.conversation_title)} — {' '.join(hit.snippet.split())}"
