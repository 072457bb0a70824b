"""Any OpenAI-compatible chat server as a Backend: vLLM, SGLang, TGI, Ollama, OpenAI, or our own /v1.

    backend = OpenAIBackend("http://gpu-box:8000/v1", model="Qwen/Qwen2.5-VL-7B-Instruct")
    load_backend("openai:http://gpu-box:8000/v1#Qwen/Qwen2.5-VL-7B-Instruct")   # the same
    load_backend("openai:http://localhost:11434/v1")     # no #MODEL: the server's first model

- Streaming chat completions (`stream: true`, server-sent events); images are sent as
  `image_url` data URLs (validated and EXIF-rotated by engine.preprocess, PNG or JPEG) and audio
  as `input_audio` (decoded by engine.preprocess, sent as 16 kHz mono WAV).
- The API key comes from `api_key`, else the environment variable OPENAI_API_KEY; with neither,
  no Authorization header is sent (local servers rarely want one).
- `timeout` bounds connecting and every wait for the next bytes. Connection failures, timeouts
  and 429/5xx answers are retried `retries` times with exponential backoff (honouring
  Retry-After) until the first piece arrives, never after (that would repeat text); then a
  `BackendError` says whether the server is down or slow. 400/422 answers become `InputError`.
- Capabilities come from the server's GET /models when it says (our /v1 lists them;
  vLLM gives `max_model_len`); otherwise images yes, audio no, 8192 tokens. With audio off,
  clips are transcribed by `transcriber` if given; with images off, images become observations.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from typing import Iterator

import httpx

from engine import preprocess
from engine.backends.base import Capabilities
from engine.backends.errors import BackendError
from engine.speech.tts import wav_bytes
from engine.backends.media import TEXT_ONLY_NOTICE, Transcriber, audio_notes, image_notes, with_notes
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo, Turn

API_KEY_ENV = "OPENAI_API_KEY"
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
SERVER_HINT = ("Check that the server is running and the URL ends in /v1 (vLLM/SGLang: http://HOST:8000/v1, "
               "TGI: http://HOST:8080/v1, Ollama: http://HOST:11434/v1).")


class OpenAIBackend:
    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retries: int = 2, backoff: float = 0.5,
                 images: bool | None = None, audio: bool | None = None,
                 transcriber: Transcriber | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"The server address {base_url!r} must start with http:// or https://.")
        self.base_url, self.model = base_url.rstrip("/"), model or None
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.transcriber = transcriber
        self._forced = {"images": images, "audio": audio}
        self.sampling = None  # the server applies its model's defaults to what we do not send
        self._capabilities: Capabilities | None = None
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True)

    @property
    def name(self) -> str:
        return f"openai:{self.model or '?'}"

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

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
        try:
            response = self._client.get(f"{self.base_url}/models", headers=self._headers(),
                                        timeout=min(self.timeout, 5.0))
            models = response.json().get("data", []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return False, {}
        if not self.model and models:
            self.model = models[0].get("id")
        return True, next((m for m in models if isinstance(m, dict) and m.get("id") == self.model), {})

    def _capabilities_from(self, listed: dict) -> Capabilities:
        said = listed.get("capabilities") or {}
        context = said.get("context_length") or listed.get("max_model_len") or 8192
        images = self._forced["images"] if self._forced["images"] is not None else said.get("images", True)
        audio = self._forced["audio"] if self._forced["audio"] is not None else said.get("audio", False)
        return Capabilities(images=bool(images), audio=bool(audio), context_length=int(context))

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ request

    def _message(self, turn: Turn, caps: Capabilities, notes: list[str]) -> dict:
        if (turn.images or turn.audio) and turn.role != "user":
            raise InputError("Only user turns can carry images or audio.")
        pictures = [preprocess.read_image(source) for source in turn.images]
        parts = [] if not caps.images else [_image_part(p) for p in pictures]
        notes[:] = [] if caps.images else image_notes(pictures)
        if caps.audio:
            parts += [_audio_part(source) for source in turn.audio]
        else:
            notes += audio_notes(turn.audio, self.transcriber, self.name)
        text = with_notes(turn.text, notes)
        if not parts:
            return {"role": turn.role, "content": text}
        return {"role": turn.role, "content": ([{"type": "text", "text": text}] if text else []) + parts}

    def _payload(self, conversation: Conversation, config: GenerationConfig, info: ReplyInfo) -> dict:
        turns = [t for t in conversation.turns if t.role != "system"]
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a user turn to get a reply.")
        caps, notes = self.capabilities, []
        system = "\n\n".join(s for s in [conversation.system_prompt] +
                             [t.text for t in conversation.turns if t.role == "system"] if s)
        messages = [{"role": "system", "content": system}] if system else []
        messages += [self._message(turn, caps, notes) for turn in turns]
        if turns[-1].images and not caps.images:
            notes.append(TEXT_ONLY_NOTICE.format(model=self.name))
        info.observations = notes
        payload = {"model": self.model or "default", "messages": messages, "stream": True,
                   "stream_options": {"include_usage": True}, "max_tokens": config.max_new_tokens,
                   "temperature": config.temperature, "top_p": config.top_p}
        if config.stop:
            payload["stop"] = list(config.stop)
        if config.seed is not None:
            payload["seed"] = config.seed
        if config.top_k:  # not in OpenAI's API: only sent when used (vLLM, SGLang and our /v1 read it)
            payload["top_k"] = config.top_k
        if config.repetition_penalty != 1.0:
            payload["repetition_penalty"] = config.repetition_penalty
        return payload

    # ------------------------------------------------------------------ stream

    def stream(self, conversation: Conversation, config: GenerationConfig = GenerationConfig(),
               cancel: threading.Event | None = None, info: ReplyInfo | None = None) -> Iterator[str]:
        """Yield the reply's text pieces as the server streams them."""
        info = info if info is not None else ReplyInfo()
        started = time.perf_counter()
        payload = self._payload(conversation, config, info)
        info.finish_reason = "cancelled"
        attempts, problem, yielded = 0, "", False
        try:
            while attempts <= self.retries:
                attempts += 1
                try:
                    with self._client.stream("POST", f"{self.base_url}/chat/completions", json=payload,
                                             headers=self._headers()) as response:
                        if response.status_code >= 400:
                            problem, delay = self._refused(response)
                        else:
                            for piece in self._pieces(response, cancel, info, started):
                                yielded = True
                                yield piece
                            return
                except httpx.TimeoutException:
                    if yielded:
                        raise BackendError(f"The model server at {self.base_url} stopped sending the reply for "
                                           f"more than {self.timeout:g} s. Try again.") from None
                    problem, delay = f"did not answer within {self.timeout:g} s", None
                except httpx.TransportError as exc:
                    if yielded:
                        raise BackendError(f"The connection to the model server at {self.base_url} broke in the "
                                           f"middle of the reply ({type(exc).__name__}). Try again.") from None
                    problem, delay = f"is not reachable ({_reason(exc)})", None
                if attempts <= self.retries:
                    wait = delay if delay is not None else self.backoff * 2 ** (attempts - 1)
                    if cancel is not None and cancel.wait(wait):
                        return
                    if cancel is None:
                        time.sleep(wait)
            slow = problem.startswith("did not answer")
            raise BackendError(f"The model server at {self.base_url} {problem} (tried {attempts} times). "
                               + ("It may be overloaded or still loading the model: try again later, or allow "
                                  "a longer timeout." if slow else SERVER_HINT))
        finally:
            info.total_time_s = time.perf_counter() - started

    def _refused(self, response: httpx.Response) -> tuple[str, float | None]:
        """A retryable problem (text, delay) for 429/5xx; raises for answers a retry cannot change."""
        response.read()
        message = _error_message(response)
        status = response.status_code
        if status in RETRYABLE_STATUS:
            retry_after = response.headers.get("retry-after", "")
            delay = min(float(retry_after), 10.0) if retry_after.replace(".", "", 1).isdigit() else None
            return f"answered HTTP {status} ({message})", delay
        if status in (401, 403):
            raise BackendError(f"The model server at {self.base_url} refused the API key (HTTP {status}: {message}). "
                               f"Set {API_KEY_ENV} to a key it accepts.")
        if status == 404:
            raise BackendError(f"The model server at {self.base_url} has no model {self.model!r} or no "
                               f"/chat/completions route (HTTP 404: {message}). Check #MODEL and the URL.")
        if status in (400, 413, 422):
            raise InputError(f"The model server refused the request: {message}")
        raise BackendError(f"The model server at {self.base_url} answered HTTP {status}: {message}")

    def _pieces(self, response: httpx.Response, cancel: threading.Event | None, info: ReplyInfo,
                started: float) -> Iterator[str]:
        finish, counted = "stop", 0
        for line in response.iter_lines():
            if cancel is not None and cancel.is_set():
                info.finish_reason = "cancelled"
                return
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise BackendError(f"The model server at {self.base_url} sent something that is not JSON "
                                   f"in its stream: {data[:80]!r}") from None
            if chunk.get("error"):
                raise BackendError(f"The model server failed while replying: {_error_message(chunk)}")
            usage = chunk.get("usage") or {}
            info.prompt_tokens = usage.get("prompt_tokens", info.prompt_tokens) or info.prompt_tokens
            info.new_tokens = usage.get("completion_tokens", 0) or info.new_tokens
            for choice in chunk.get("choices") or []:
                finish = choice.get("finish_reason") or finish
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    counted += 1
                    if info.time_to_first_token_s is None:
                        info.time_to_first_token_s = time.perf_counter() - started
                    yield piece
        info.new_tokens = info.new_tokens or counted
        info.finish_reason = "length" if finish == "length" else "stop"


def _image_part(picture) -> dict:
    buffer = io.BytesIO()
    small = picture.width * picture.height <= 1_000_000
    picture.save(buffer, "PNG" if small else "JPEG", **({} if small else {"quality": 90}))
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/{'png' if small else 'jpeg'};base64,{data}"}}


def _audio_part(source) -> dict:
    clip = wav_bytes(preprocess.read_audio(source, 16000).numpy(), 16000)
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip).decode("ascii"), "format": "wav"}}


def _error_message(response_or_body) -> str:
    try:
        body = response_or_body.json() if isinstance(response_or_body, httpx.Response) else response_or_body
    except ValueError:
        return (response_or_body.text or "no details")[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if isinstance(body, dict) and (error or body.get("detail") or body.get("message")):
        return str(error or body.get("detail") or body.get("message"))
    return str(body)[:300]


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text.splitlines()[0][:120]
