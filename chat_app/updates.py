"""What a turn is asked with (Options, the settings panel) and what it streams back (ChatUpdate)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from chat_app.render import TurnReport
from chat_app.uploads import Rejected
from engine.types import GenerationConfig, InputError

EMPTY_BOX = {"text": "", "files": []}


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
            return GenerationConfig(
                max_new_tokens=int(self.max_new_tokens),
                temperature=float(self.temperature),
                top_p=float(self.top_p),
                seed=self.seed,
            )
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
    notice: str | None = None  # bad input, failures, warnings: shown apart from the chat, never in `messages`
    done: bool = False
    list_changed: bool = False  # the conversation list needs refreshing (new, renamed by its first message)
    report: TurnReport | None = None  # on the last update: what the model saw for the latest reply
