"""OpenAI-compatible HTTP API on the same server as the UI, answered by the loaded backend(s).

    demo.app.include_router(build_api_router(lambda: backends, authenticate=check))  # beside Gradio
    app = create_api_app(backend)                                    # standalone (tests, headless)

- POST /v1/chat/completions: messages whose content is text or parts `text`, `image_url` (base64
  data URLs only: http(s) URLs are refused, the server may be offline and must not fetch for
  callers) and `input_audio` ({"data": base64, "format": "wav"|"mp3"|...}); `stream` (SSE chunks,
  then `data: [DONE]`; `stream_options.include_usage`), `max_tokens`/`max_completion_tokens`,
  `temperature`, `top_p`, `stop`, `seed`, plus `top_k` and `repetition_penalty`. Left-out options
  take the model's own temperature and top_p (its generation_config.json, as vLLM does) and
  otherwise GenerationConfig's defaults. `model` picks one of the loaded models; any other name is
  answered by the first. Refused with 400: n > 1, tools, logprobs, non-text response formats,
  frequency/presence penalties.
- GET /v1/models (and /v1/models/{id}): the loaded models plus a `capabilities` extension
  (images, audio, context_length) that engine.backends.openai_client reads.

Errors are OpenAI's JSON {"error": {"message", "type", "param", "code"}}: 400 bad request or input
the engine refuses, 401 bad credentials, 503 no model loaded or the backend failed (GPU, remote
server), 500 otherwise; after streaming began, one `data: {"error": ...}` event. With
`authenticate(username, password) -> bool` (the UI's --auth check), requests need HTTP Basic or
`Authorization: Bearer USERNAME:PASSWORD` (the SDK's api_key). Replies run in worker threads and
a client that disconnects cancels its reply. No torch here: engine types and the Backend only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable, Mapping, Optional, Union

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from engine.backends.base import Backend, Sampling
from engine.backends.errors import BackendError
from engine.types import (CheckpointError, Conversation, EngineError, GenerationConfig, InputError, ReplyInfo,
                          Turn)

log = logging.getLogger(__name__)
BackendProvider = Callable[[], Optional[Union[Backend, Mapping[str, Backend]]]]
Authenticate = Callable[[str, str], bool]
MAX_BODY_BYTES = 320 * 2**20
_DONE = object()
_UNSUPPORTED = {"tools": "tool calls", "functions": "function calls", "tool_choice": "tool calls",
                "logprobs": "logprobs", "top_logprobs": "logprobs"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="multimodal-chat"'} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def _engine_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InputError):
        return ApiError(400, str(exc), param="messages")
    if isinstance(exc, CheckpointError):
        return ApiError(500, str(exc), "server_error", code="model_error")
    if isinstance(exc, BackendError):
        return ApiError(503, str(exc), "server_error", code="backend_unavailable")
    if isinstance(exc, EngineError):
        return ApiError(500, str(exc), "server_error")
    log.exception("unexpected error in /v1", exc_info=exc)
    return ApiError(500, f"Internal error ({type(exc).__name__}); see the server log.", "server_error")


# ----------------------------------------------------------------------------- requests


def _media_bytes(data: Any, param: str, what: str) -> bytes:
    if not isinstance(data, str) or not data:
        raise ApiError(400, f"{param} must be a non-empty base64 string.", param=param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{param} is not valid base64 {what} data.", param=param) from None


def _image(part: dict, param: str) -> bytes:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{param}.image_url.url must be a string.", param=param)
    if url.startswith(("http://", "https://")):
        raise ApiError(400, "This server does not download images from URLs (it may have no network, and "
                            "fetching would let callers reach private addresses). Send the image inline as "
                            "a data URL: data:image/png;base64,...", param=param, code="image_url_not_supported")
    header, comma, data = url.partition(",")
    if not (url.startswith("data:") and comma and header.endswith(";base64")):
        raise ApiError(400, "image_url must be a base64 data URL such as data:image/png;base64,...", param=param)
    return _media_bytes(data, f"{param}.image_url", "image")


def _turn(message: Any, index: int) -> Turn:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise ApiError(400, f"{param} must be an object with role and content.", param=param)
    role = {"developer": "system"}.get(message.get("role"), message.get("role"))
    if role not in ("system", "user", "assistant"):
        raise ApiError(400, f"{param}.role {message.get('role')!r} is not supported: use system, developer, user "
                            "or assistant (tool messages are not supported).", param=f"{param}.role")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return Turn(role, content or "")
    if not isinstance(content, list):
        raise ApiError(400, f"{param}.content must be a string or a list of parts.", param=f"{param}.content")
    texts, images, audio = [], [], []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(_image(part, where))
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            audio.append(_media_bytes(part["input_audio"].get("data"), f"{where}.input_audio.data", "audio"))
        elif kind != "refusal":
            raise ApiError(400, f"{where} has an unsupported type {kind!r}: use text, image_url or input_audio "
                                "(with its fields).", param=where)
    if (images or audio) and role != "user":
        raise ApiError(400, f"{param}: only user messages can carry images or audio.", param=param)
    return Turn(role, "\n".join(texts), images=images, audio=audio)


def _number(body: dict, key: str, kind: type, default):
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ApiError(400, f"{key} must be {'a number' if kind is float else 'an integer'}.", param=key)
    return kind(value)


def parse_request(body: Any, context_length: int,
                  sampling: Sampling | None = None) -> tuple[Conversation, GenerationConfig, bool, bool]:
    """A chat-completions body -> (conversation, config, stream, include_usage); ApiError when invalid."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    for key, what in _UNSUPPORTED.items():
        if body.get(key):
            raise ApiError(400, f"{what.capitalize()} are not supported by this server.", param=key)
    if _number(body, "n", int, 1) != 1:
        raise ApiError(400, "Only n=1 (one choice) is supported.", param="n")
    for key in ("frequency_penalty", "presence_penalty"):
        if _number(body, key, float, 0.0):
            raise ApiError(400, f"{key} is not supported; use repetition_penalty (e.g. 1.1).", param=key)
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise ApiError(400, "Only the text response format is supported.", param="response_format")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list.", param="messages")
    turns = [_turn(message, i) for i, message in enumerate(messages)]
    system = "\n\n".join(t.text for t in turns if t.role == "system" and t.text)
    conversation = Conversation(system, [t for t in turns if t.role != "system"])
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise ApiError(400, "stop must be a non-empty string or a list of them.", param="stop")
    defaults = GenerationConfig()
    if sampling is not None:  # what the model's makers recommend, where the request is silent
        defaults = replace(defaults, temperature=sampling.temperature, top_p=sampling.top_p)
    max_tokens = _number(body, "max_completion_tokens", int, None)
    max_tokens = _number(body, "max_tokens", int, defaults.max_new_tokens) if max_tokens is None else max_tokens
    stream, options = body.get("stream", False), body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise ApiError(400, "stream must be true or false and stream_options an object.", param="stream")
    try:
        config = GenerationConfig(
            max_new_tokens=min(max_tokens, context_length),
            temperature=_number(body, "temperature", float, defaults.temperature),
            top_p=_number(body, "top_p", float, defaults.top_p), top_k=_number(body, "top_k", int, defaults.top_k),
            repetition_penalty=_number(body, "repetition_penalty", float, defaults.repetition_penalty),
            stop=tuple(stop or ()), seed=_number(body, "seed", int, None))
    except InputError as exc:
        raise ApiError(400, str(exc)) from None
    return conversation, config, stream, bool(options.get("include_usage"))


# ----------------------------------------------------------------------------- replies


class _Reply:
    """A backend stream driven from async code: each next piece is computed in a worker thread."""

    def __init__(self, backend: Backend, conversation: Conversation, config: GenerationConfig):
        self.info, self.cancel = ReplyInfo(), threading.Event()
        self._pieces = backend.stream(conversation, config, cancel=self.cancel, info=self.info)

    def _next(self):
        return next(self._pieces, _DONE)

    async def next(self):
        return await anyio.to_thread.run_sync(self._next)

    async def close(self) -> None:
        self.cancel.set()
        with anyio.CancelScope(shield=True):  # runs even when the request was cancelled
            await anyio.to_thread.run_sync(self._pieces.close)


def _finish_reason(info: ReplyInfo) -> str:
    return "length" if info.finish_reason == "length" else "stop"


def _usage(info: ReplyInfo) -> dict:
    return {"prompt_tokens": info.prompt_tokens, "completion_tokens": info.new_tokens,
            "total_tokens": info.prompt_tokens + info.new_tokens}


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _complete(reply: _Reply, request: Request, head: dict) -> JSONResponse:
    pieces = []
    try:
        while (piece := await reply.next()) is not _DONE:
            pieces.append(piece)
            if await request.is_disconnected():
                break
    finally:
        await reply.close()
    message = {"role": "assistant", "content": "".join(pieces)}
    body = {**head, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": _finish_reason(reply.info)}], "usage": _usage(reply.info)}
    if reply.info.observations:
        body["observations"] = reply.info.observations  # extension: what offline tools saw
    return JSONResponse(body)


async def _events(reply: _Reply, first, request: Request, head: dict, include_usage: bool):
    def chunk(delta: dict, finish: str | None = None) -> str:
        return _sse({**head, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    try:
        yield chunk({"role": "assistant", "content": ""})
        piece = first
        while piece is not _DONE:
            yield chunk({"content": piece})
            if await request.is_disconnected():
                return
            piece = await reply.next()
        yield chunk({}, _finish_reason(reply.info))
        if include_usage:
            yield _sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(reply.info)})
        yield "data: [DONE]\n\n"
    except Exception as exc:  # headers are sent: report the failure as an event, as OpenAI does
        yield _sse(_engine_error(exc).body())
    finally:
        await reply.close()


# ----------------------------------------------------------------------------- routes


def _credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    elif scheme.lower() != "bearer":
        return None
    username, colon, password = value.partition(":")
    return (username, password) if colon else None


def build_api_router(backend_provider: BackendProvider, authenticate: Authenticate | None = None) -> APIRouter:
    """The /v1 routes, served by `backend_provider()`: one Backend, a {name: Backend} dict (the
    request's `model` picks one, else the first answers), or None while no model is loaded."""
    router = APIRouter(prefix="/v1")
    created = int(time.time())

    async def admit(request: Request) -> dict[str, Backend]:
        if authenticate is not None:
            credentials = _credentials(request.headers.get("authorization", ""))
            allowed = credentials is not None and await anyio.to_thread.run_sync(authenticate, *credentials)
            if not allowed:
                raise ApiError(401, "Sign in: send HTTP Basic credentials or `Authorization: Bearer "
                                    "USERNAME:PASSWORD` (the SDK's api_key) for an account of this app.",
                               "authentication_error", code="invalid_api_key")
        loaded = backend_provider()
        backends = dict(loaded) if isinstance(loaded, Mapping) else {loaded.name: loaded} if loaded else {}
        if not backends:
            raise ApiError(503, "No model is loaded yet; try again in a moment.", "server_error",
                           code="model_not_loaded")
        return backends

    def describe(backend: Backend) -> dict:
        caps = backend.capabilities
        return {"id": backend.name, "object": "model", "created": created, "owned_by": "multimodal-chat",
                "capabilities": {"images": caps.images, "audio": caps.audio, "context_length": caps.context_length}}

    @router.get("/models")
    async def list_models(request: Request):
        try:
            backends = await admit(request)
            listed = await anyio.to_thread.run_sync(lambda: [describe(b) for b in backends.values()])
            return {"object": "list", "data": listed}
        except ApiError as exc:
            return exc.response()

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        try:
            backends = await admit(request)
            if model_id not in backends:
                raise ApiError(404, f"No model {model_id!r}; this server runs {', '.join(backends)}.",
                               param="model", code="model_not_found")
            return await anyio.to_thread.run_sync(describe, backends[model_id])
        except ApiError as exc:
            return exc.response()

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        try:
            backends = await admit(request)
            if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
                raise ApiError(413, f"The request is over {MAX_BODY_BYTES // 2**20} MiB; send smaller media.")
            try:
                body = json.loads(await request.body())
            except ValueError:
                raise ApiError(400, "The request body is not valid JSON.") from None
            name = body.get("model") if isinstance(body, dict) else None
            backend = backends.get(name) or next(iter(backends.values()))
            context = await anyio.to_thread.run_sync(lambda: backend.capabilities.context_length)
            conversation, config, stream, include_usage = parse_request(body, context, backend.sampling)
            head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": backend.name}
            reply = _Reply(backend, conversation, config)
            if not stream:
                return await _complete(reply, request, head)
            try:
                first = await reply.next()  # bad input fails here, before any header is sent
            except BaseException:
                await reply.close()
                raise
            return StreamingResponse(_events(reply, first, request, head, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        except Exception as exc:
            return _engine_error(exc).response()

    return router


def create_api_app(backend: Backend | Mapping[str, Backend] | BackendProvider,
                   authenticate: Authenticate | None = None) -> FastAPI:
    """A FastAPI app serving only /v1 (tests, or serving models without the UI)."""
    provider = (lambda: backend) if isinstance(backend, (Backend, Mapping)) else backend
    app = FastAPI(title="multimodal-chat OpenAI-compatible API")
    app.include_router(build_api_router(provider, authenticate))
    return app
