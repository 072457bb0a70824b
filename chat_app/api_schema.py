"""The body of POST /v1/chat/completions as pydantic models: the part of OpenAI's request this
server serves, with its limits, turned into the engine's Conversation and GenerationConfig.

    request = ChatCompletionRequest.model_validate(body)     # pydantic.ValidationError when invalid
    message, param, code = explain(error)                     # its first problem, for an OpenAI error body
    conversation, config = request.conversation(), request.config(context_length, sampling)

Validation is strict, as the hand-written checks were: no "0.5" for a number, no true for an
integer. Unknown fields are ignored (OpenAI adds new ones often); the ones this server cannot honour
are refused by name. Limits beyond the engine's own (GenerationConfig):

- temperature 0..2 (OpenAI's range, the UI slider's, a checkpoint's generation_config.json's); no
  NaN or Infinity anywhere.
- seed within a signed 64-bit integer (torch's manual_seed takes no more).
- repetition_penalty in (0, 10]: 1.1-1.3 is typical; past 10 every seen token is as good as banned,
  and 1e308 turns the logits into inf/NaN.
- max_tokens / max_completion_tokens: at least 1, clamped to the model's context length.
- top_k: 0 (off) or more, passed on as sent: the engine keeps min(top_k, vocabulary), so any value at
  or above the vocabulary size means no top-k filter (the API does not know the vocabulary size).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.backends.base import Sampling
from engine.types import Conversation, GenerationConfig, Turn

INT64 = 2**63
PART_TYPES = ("text", "image_url", "input_audio", "refusal")
_UNSUPPORTED = {
    "tools": "Tool calls",
    "functions": "Function calls",
    "tool_choice": "Tool calls",
    "logprobs": "Logprobs",
    "top_logprobs": "Logprobs",
}


def _refuse(message: str, code: str | None = None) -> PydanticCustomError:
    """A problem worded by us; `{param}` in the message becomes where it is (messages[0].content[1])."""
    return PydanticCustomError("refused", message, {"code": code} if code else None)


def _base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise _refuse("{param} must be a non-empty base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(f"{{param}} is not valid base64 {what} data.") from None


def _data_url(url: Any) -> bytes:
    if not isinstance(url, str) or not url:
        raise _refuse("{param} must be a string.")
    if url.startswith(("http://", "https://")):
        raise _refuse(
            "{param}: this server does not download images from URLs (it may have no network, and "
            "fetching would let callers reach private addresses). Send the image inline as a data "
            "URL: data:image/png;base64,...",
            code="image_url_not_supported",
        )
    header, comma, data = url.partition(",")
    if not (url.startswith("data:") and comma and header.endswith(";base64")):
        raise _refuse("{param} must be a base64 data URL such as data:image/png;base64,...")
    return _base64(data, "image")


def _role(role: Any) -> str:
    if role not in ("system", "developer", "user", "assistant"):
        raise _refuse(
            f"{{param}} {role!r} is not supported: use system, developer, user or assistant "
            "(tool messages are not supported)."
        )
    return "system" if role == "developer" else role


def _as_parts(content: Any) -> Any:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _refuse("{param} must be a string or a list of parts.")
    return content


def _stop(stop: Any) -> tuple[str, ...]:
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise _refuse("stop must be a non-empty string or a list of them.")
    return tuple(stop)


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


class TextPart(_Model):
    type: Literal["text"]
    text: str


class ImageURL(_Model):
    url: Annotated[bytes, PlainValidator(_data_url)]  # the image's bytes, from a base64 data URL


class ImagePart(_Model):
    type: Literal["image_url"]
    image_url: Annotated[ImageURL, BeforeValidator(lambda v: {"url": v} if isinstance(v, str) else v)]


class InputAudio(_Model):
    data: Annotated[bytes, PlainValidator(lambda v: _base64(v, "audio"))] = Field("", validate_default=True)
    format: str | None = None  # "wav", "mp3", ...: unused, the engine reads the bytes' own header


class AudioPart(_Model):
    type: Literal["input_audio"]
    input_audio: InputAudio


class RefusalPart(_Model):  # an earlier assistant refusal: accepted and left out
    type: Literal["refusal"]


Part = Annotated[TextPart | ImagePart | AudioPart | RefusalPart, Field(discriminator="type")]


class Message(_Model):
    role: Annotated[str, PlainValidator(_role)]  # developer is read as system
    content: Annotated[list[Part], BeforeValidator(_as_parts)] = []  # a string is one text part

    @model_validator(mode="after")
    def _media_from_users_only(self) -> Message:
        if self.role != "user" and any(isinstance(p, (ImagePart, AudioPart)) for p in self.content):
            raise _refuse("{param}: only user messages can carry images or audio.")
        return self

    def turn(self) -> Turn:
        return Turn(
            self.role,
            "\n".join(p.text for p in self.content if isinstance(p, TextPart)),
            images=[p.image_url.url for p in self.content if isinstance(p, ImagePart)],
            audio=[p.input_audio.data for p in self.content if isinstance(p, AudioPart)],
        )


class StreamOptions(_Model):
    include_usage: bool | None = None


class ChatCompletionRequest(_Model):
    """What POST /v1/chat/completions takes; left-out options are None (the model's or GenerationConfig's)."""

    model: str | None = None  # one of the loaded models; left out (or "default"): the first
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name; wins over max_tokens
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)  # extension (vLLM's); 0 = off
    repetition_penalty: float | None = Field(None, gt=0, le=10)  # extension (vLLM's); 1 = off
    stop: Annotated[tuple[str, ...], PlainValidator(_stop)] = ()
    seed: int | None = Field(None, ge=-INT64, le=INT64 - 1)
    # refused unless left at what this server does anyway
    n: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: dict | None = None
    tools: Any = None
    functions: Any = None
    tool_choice: Any = None
    logprobs: Any = None
    top_logprobs: Any = None

    @field_validator(*_UNSUPPORTED)
    @classmethod
    def _not_supported(cls, value: Any, info: ValidationInfo) -> Any:
        if value:
            raise _refuse(f"{_UNSUPPORTED[info.field_name]} are not supported by this server.")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise _refuse("Only n=1 (one choice) is supported.")
        return n

    @field_validator("frequency_penalty", "presence_penalty")
    @classmethod
    def _no_penalty(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value:
            raise _refuse(f"{info.field_name} is not supported; use repetition_penalty (e.g. 1.1).")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict | None) -> dict | None:
        if value not in (None, {"type": "text"}):
            raise _refuse("Only the text response format is supported.")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def conversation(self) -> Conversation:
        turns = [m.turn() for m in self.messages]
        system = "\n\n".join(t.text for t in turns if t.role == "system" and t.text)
        return Conversation(system, [t for t in turns if t.role != "system"])

    def config(self, context_length: int, sampling: Sampling | None = None) -> GenerationConfig:
        """Raises InputError where the engine refuses the combination."""
        defaults = GenerationConfig()
        if sampling is not None:  # what the model's makers recommend, where the request is silent
            defaults = replace(defaults, temperature=sampling.temperature, top_p=sampling.top_p)

        def given(*values):
            return next(v for v in values if v is not None)

        return GenerationConfig(
            max_new_tokens=min(
                given(self.max_completion_tokens, self.max_tokens, defaults.max_new_tokens), context_length
            ),
            temperature=given(self.temperature, defaults.temperature),
            top_p=given(self.top_p, defaults.top_p),
            top_k=given(self.top_k, defaults.top_k),
            repetition_penalty=given(self.repetition_penalty, defaults.repetition_penalty),
            stop=self.stop,
            seed=self.seed,
        )


# ----------------------------------------------------------------------------- error messages

_SAY = {
    "missing": "{param} is required",
    "too_short": "{param} must not be empty",
    "finite_number": "{param} must be a finite number, not {got}",
    "greater_than_equal": "{param} must be at least {ge}, not {got}",
    "greater_than": "{param} must be more than {gt}, not {got}",
    "less_than_equal": "{param} must be at most {le}, not {got}",
    "int_type": "{param} must be an integer, not {got}",
    "float_type": "{param} must be a number, not {got}",
    "string_type": "{param} must be a string, not {got}",
    "bool_type": "{param} must be true or false, not {got}",
    "dict_type": "{param} must be an object, not {got}",
    "model_type": "{param} must be an object, not {got}",
    "model_attributes_type": "{param} must be an object, not {got}",
    "list_type": "{param} must be a list, not {got}",
    "literal_error": "{param} must be {expected}, not {got}",
    "union_tag_invalid": "{param} has an unsupported type {tag!r}: use text, image_url or input_audio "
    "(with its fields)",
    "union_tag_not_found": "{param} needs a type: text, image_url or input_audio",
}


def _param(loc: tuple) -> str:
    """('messages', 0, 'content', 1, 'image_url', 'image_url', 'url') -> messages[0].content[1].image_url.url"""
    out = ""
    for i, key in enumerate(loc):
        if isinstance(key, int):
            out += f"[{key}]"
        elif not (i >= 2 and loc[i - 2] == "content" and isinstance(loc[i - 1], int) and key in PART_TYPES):
            out += f".{key}" if out else key  # (skips the union's tag that pydantic puts in the path)
    return out


def explain(error: ValidationError) -> tuple[str, str | None, str | None]:
    """The first problem as (message a person can act on, param, code)."""
    first = error.errors(include_url=False)[0]
    param, ctx = _param(first["loc"]) or None, first.get("ctx") or {}
    if first["type"] == "refused":
        return first["msg"].replace("{param}", param or "the request"), param, ctx.get("code")
    got = repr(first.get("input"))
    got = got if len(got) <= 40 else got[:37] + "..."
    template = _SAY.get(first["type"], "{param}: {msg}")
    text = template.format(param=param or "The request body", got=got, msg=first["msg"], **ctx)
    return text + ".", param, None
