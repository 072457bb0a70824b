"""Any OpenAI-compatible chat server as a Backend: vLLM, SGLang, TGI, Ollama, OpenAI, or our own /v1.

    backend = OpenAIBackend("http://gpu-box:8000/v1", model="Qwen/Qwen2.5-VL-7B-Instruct")
    load_backend("openai:http://gpu-box:8000/v1#Qwen/Qwen2.5-VL-7B-Instruct")   # the same
    load_backend("openai:http://localhost:11434/v1")     # no #MODEL: the server's first model

- Streaming chat completions through the official `openai` SDK; images are sent as `image_url`
  data URLs (validated and EXIF-rotated by engine.turns / engine.preprocess, PNG or JPEG) and
  audio as `input_audio` (decoded the same way, sent as 16 kHz mono WAV).
- The API key comes from `api_key`, else the environment variable OPENAI_API_KEY; with neither,
  no Authorization header is sent (local servers rarely want one).
- `timeout` bounds connecting and every wait for the next bytes. Connection failures, timeouts
  and 408/409/429/5xx answers are retried `retries` times by the SDK (exponential backoff from
  0.5 s, honouring Retry-After) before the stream starts, never after (that would repeat text);
  then a `BackendError` says whether the server is down or slow. 400/413/422 become `InputError`.
- Capabilities come from the server's GET /models when it says (our /v1 lists them;
  vLLM gives `max_model_len`); otherwise images yes, audio no, 8192 tokens. With audio off,
  clips are transcribed by `transcriber` if given; with images off, images become observations.
"""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from collections.abc import Iterator

import openai

from engine.backends.base import Capabilities
from engine.backends.errors import BackendError
from engine.backends.media import Transcriber, check_audio, media_needs, observations
from engine.cache import LRUCache
from engine.speech.tts import wav_bytes
from engine.turns import PreparedAudio, PreparedImage, PreparedTurn, prepare_turns
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo

API_KEY_ENV = "OPENAI_API_KEY"
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
SERVER_HINT = (
    "Check that the server is running and the URL ends in /v1 (vLLM/SGLang: http://HOST:8000/v1, "
    "TGI: http://HOST:8080/v1, Ollama: http://HOST:11434/v1)."
)
_parts: LRUCache[dict] = LRUCache(64 * 2**20, weigh=lambda part: len(str(part)))  # encoded media, by digest


class OpenAIBackend:
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        images: bool | None = None,
        audio: bool | None = None,
        transcriber: Transcriber | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"The server address {base_url!r} must start with http:// or https://.")
        self.base_url, self.model = base_url.rstrip("/"), model or None
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.timeout, self.retries = timeout, retries
        self.transcriber = transcriber
        self._forced = {"images": images, "audio": audio}
        self.sampling = None  # the server applies its model's defaults to what we do not send
        self._capabilities: Capabilities | None = None
        self._lock = threading.Lock()
        # Without a key no Authorization header is sent (the SDK wants one, so it gets a placeholder).
        self._headers = {} if self.api_key else {"Authorization": openai.Omit()}
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key or "unused", timeout=timeout, max_retries=retries
        )

    @property
    def name(self) -> str:
        return f"openai:{self.model or '?'}"

    @property
    def capabilities(self) -> Capabilities:
        """Asked once from GET /models (short timeout); defaults when the server does not say."""
        with self._lock:
            if self._capabilities is None:
                answered, listed = self._describe_model()
                if not answered:  # down for now: defaults, and ask again next time
                    return self._capabilities_from({})
                self._capabilities = self._capabilities_from(listed)
            return self._capabilities

    def _describe_model(self) -> tuple[bool, dict]:
        """(whether GET /models answered, this model's entry or {})."""
        client = self._client.with_options(timeout=min(self.timeout, 5.0), max_retries=0)
        try:
            models = [m.to_dict() for m in client.models.list(extra_headers=self._headers).data]
        except openai.APIStatusError:
            models = []
        except (openai.APIError, ValueError, TypeError, AttributeError):
            return False, {}
        if not self.model and models:
            self.model = models[0].get("id")
        return True, next((m for m in models if isinstance(m, dict) and m.get("id") == self.model), {})

    def _capabilities_from(self, listed: dict) -> Capabilities:
        said = listed.get("capabilities") or {}
        context = said.get("context_length") or listed.get("max_model_len") or 8192
        images = self._forced["images"] if self._forced["images"] is not None else said.get("images", True)
        audio = self._forced["audio"] if self._forced["audio"] is not None else said.get("audio", False)
        # a server that does not see pictures gets them as the offline tools' findings (text)
        return Capabilities(
            images=bool(images), audio=bool(audio), context_length=int(context), describes_images=not images
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ request

    def _message(self, turn: PreparedTurn, caps: Capabilities) -> dict:
        parts = [_image_part(image) for image in turn.images] if caps.images else []
        parts += [_audio_part(clip) for clip in turn.audio] if caps.audio else []
        text = turn.text_with_notes()
        if not parts:
            return {"role": turn.role, "content": text}
        return {"role": turn.role, "content": ([{"type": "text", "text": text}] if text else []) + parts}

    def _payload(self, conversation: Conversation, config: GenerationConfig, info: ReplyInfo) -> dict:
        """The keyword arguments of `chat.completions.create` for this conversation."""
        turns = [t for t in conversation.turns if t.role != "system"]
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a user turn to get a reply.")
        caps = self.capabilities
        system = "\n\n".join(
            s for s in [conversation.system_prompt] + [t.text for t in conversation.turns if t.role == "system"] if s
        )
        check_audio(turns, self.transcriber, caps.audio, self.name)
        prepared = prepare_turns(turns, media_needs(caps.images, caps.audio, self.transcriber, keep_waveform=16000))
        messages = [{"role": "system", "content": system}] if system else []
        messages += [self._message(turn, caps) for turn in prepared]
        info.observations = observations(prepared, caps.images, self.name)
        payload = {
            "model": self.model or "default",
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
        }
        if config.stop:
            payload["stop"] = list(config.stop)
        if config.seed is not None:
            payload["seed"] = config.seed
        extra = {}
        if config.top_k:  # not in OpenAI's API: only sent when used (vLLM, SGLang and our /v1 read it)
            extra["top_k"] = config.top_k
        if config.repetition_penalty != 1.0:
            extra["repetition_penalty"] = config.repetition_penalty
        if extra:
            payload["extra_body"] = extra
        return payload

    # ------------------------------------------------------------------ stream

    def stream(
        self,
        conversation: Conversation,
        config: GenerationConfig = GenerationConfig(),
        cancel: threading.Event | None = None,
        info: ReplyInfo | None = None,
    ) -> Iterator[str]:
        """Yield the reply's text pieces as the server streams them."""
        info = info if info is not None else ReplyInfo()
        started = time.perf_counter()
        payload = self._payload(conversation, config, info)
        info.finish_reason = "cancelled"
        yielded = False
        try:
            client = self._client.with_options(max_retries=self.retries, timeout=self.timeout)
            try:
                chunks = client.chat.completions.create(**payload, extra_headers=self._headers)
            except openai.APIError as exc:
                raise self._failure(exc, yielded) from None
            with chunks:  # closing it (cancel, an error, a closed generator) hangs up on the server
                pieces = self._pieces(chunks, cancel, info, started)
                while True:
                    try:
                        piece = next(pieces, None)
                    except openai.APIError as exc:
                        raise self._failure(exc, yielded) from None
                    except ValueError:  # a line of the event stream that is not JSON
                        raise BackendError(
                            f"The model server at {self.base_url} sent something that is not JSON in its stream."
                        ) from None
                    if piece is None:
                        return
                    yielded = True
                    yield piece
        finally:
            info.total_time_s = time.perf_counter() - started

    def _pieces(self, chunks, cancel: threading.Event | None, info: ReplyInfo, started: float) -> Iterator[str]:
        finish, counted = "stop", 0
        for chunk in chunks:
            if cancel is not None and cancel.is_set():
                info.finish_reason = "cancelled"
                return
            if chunk.usage is not None:
                info.prompt_tokens = chunk.usage.prompt_tokens or info.prompt_tokens
                info.new_tokens = chunk.usage.completion_tokens or info.new_tokens
            for choice in chunk.choices or []:
                finish = choice.finish_reason or finish
                piece = choice.delta.content if choice.delta is not None else None
                if piece:
                    counted += 1
                    if info.time_to_first_token_s is None:
                        info.time_to_first_token_s = time.perf_counter() - started
                    yield piece
        info.new_tokens = info.new_tokens or counted
        info.finish_reason = "length" if finish == "length" else "stop"

    def _failure(self, exc: openai.APIError, yielded: bool) -> Exception:
        """The BackendError (or InputError) a person reads for what the SDK raised."""
        tried = f"(tried {self.retries + 1} times)"
        if isinstance(exc, openai.APITimeoutError):
            if yielded:
                return BackendError(
                    f"The model server at {self.base_url} stopped sending the reply for "
                    f"more than {self.timeout:g} s. Try again."
                )
            return BackendError(
                f"The model server at {self.base_url} did not answer within {self.timeout:g} s "
                f"{tried}. It may be overloaded or still loading the model: try again later, "
                "or allow a longer timeout."
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            if yielded:
                return BackendError(
                    f"The connection to the model server at {self.base_url} broke in the "
                    f"middle of the reply ({type(cause).__name__}). Try again."
                )
            return BackendError(
                f"The model server at {self.base_url} is not reachable ({_reason(cause)}) {tried}. " + SERVER_HINT
            )
        if not isinstance(exc, openai.APIStatusError):  # an error event inside the stream
            return BackendError(f"The model server failed while replying: {_error_message(exc.body, exc.message)}")
        return self._refusal(exc.status_code, _error_message(exc.body, exc.message), tried)

    def _refusal(self, status: int, message: str, tried: str) -> Exception:
        if status in RETRYABLE_STATUS:
            return BackendError(
                f"The model server at {self.base_url} answered HTTP {status} ({message}) {tried}. " + SERVER_HINT
            )
        if status in (401, 403):
            return BackendError(
                f"The model server at {self.base_url} refused the API key (HTTP {status}: "
                f"{message}). Set {API_KEY_ENV} to a key it accepts."
            )
        if status == 404:
            return BackendError(
                f"The model server at {self.base_url} has no model {self.model!r} or no "
                f"/chat/completions route (HTTP 404: {message}). Check #MODEL and the URL."
            )
        if status in (400, 413, 422):
            return InputError(f"The model server refused the request: {message}")
        return BackendError(f"The model server at {self.base_url} answered HTTP {status}: {message}")


def _image_part(image: PreparedImage) -> dict:
    def encode() -> dict:
        picture, buffer = image.picture, io.BytesIO()
        small = picture.width * picture.height <= 1_000_000
        picture.save(buffer, "PNG" if small else "JPEG", **({} if small else {"quality": 90}))
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        return {"type": "image_url", "image_url": {"url": f"data:image/{'png' if small else 'jpeg'};base64,{data}"}}

    return _parts.get_or_compute(("image", image.digest), encode) if image.digest else encode()


def _audio_part(clip: PreparedAudio) -> dict:
    def encode() -> dict:
        data = base64.b64encode(wav_bytes(clip.waveform.numpy(), 16000)).decode("ascii")
        return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}

    return _parts.get_or_compute(("audio", clip.digest), encode) if clip.digest else encode()


def _error_message(body, fallback: str = "") -> str:
    """The server's own words from an error body ({"message": ...}, {"detail": ...}, or text)."""
    if isinstance(body, dict):
        said = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(said, dict):
            said = said.get("message") or said
        return str(said or body)[:300]
    return str(body or fallback or "no details")[:300]


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text.splitlines()[0][:120]
