"""OpenAI-compatible HTTP API on the same server as the UI, answered by the loaded backend(s).

    demo.app.include_router(build_api_router(lambda: backends, authenticate=check))  # beside Gradio
    app = create_api_app(backend)                                    # standalone (tests, headless)

- POST /v1/chat/completions (Content-Type: application/json; the body's models are in
  chat_app/api_schema.py): messages whose content is text or parts `text`, `image_url` (base64
  data URLs only: http(s) URLs are refused, the server may be offline and must not fetch for
  callers) and `input_audio` ({"data": base64, "format": "wav"|"mp3"|...}); `stream` (SSE chunks,
  then `data: [DONE]`; `stream_options.include_usage`), `max_tokens`/`max_completion_tokens`
  (clamped to the context length), `temperature`, `top_p`, `stop`, `seed`, plus `top_k` and
  `repetition_penalty`. Left-out options take the model's own temperature and top_p (its
  generation_config.json, as vLLM does) and otherwise GenerationConfig's defaults. `model` picks one
  of the loaded models (left out or "default": the first; another name is 404 model_not_found, as
  OpenAI answers). Refused with 400: n > 1, tools, logprobs, non-text response formats,
  frequency/presence penalties, values out of range (NaN and Infinity included).
- GET /v1/models (and /v1/models/{id}): the loaded models plus a `capabilities` extension
  (images, audio, context_length) that engine.backends.openai_client reads.

Errors are OpenAI's JSON {"error": {"message", "type", "param", "code"}}: 400 bad request or input
the engine refuses, 401 bad credentials, 404 unknown model, 413 too large, 415 not sent as JSON,
503 no model loaded or the backend failed (GPU, remote server), 500 otherwise; after streaming
began, one `data: {"error": ...}` event. With `authenticate(username, password) -> bool` (the
UI's --auth check), requests need HTTP Basic or `Authorization: Bearer USERNAME:PASSWORD` (the
SDK's api_key). Replies run in worker threads and a client that disconnects cancels its reply.
No torch here: engine types and the Backend only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from chat_app.api_schema import ChatCompletionRequest, explain
from engine.backends.base import Backend, Sampling
from engine.backends.errors import BackendError
from engine.types import CheckpointError, Conversation, EngineError, GenerationConfig, InputError, ReplyInfo

log = logging.getLogger(__name__)
BackendProvider = Callable[[], Backend | Mapping[str, Backend] | None]
Authenticate = Callable[[str, str], bool]
MAX_BODY_BYTES = 320 * 2**20
_DONE = object()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
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


def _require_json(request: Request) -> None:
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(
            415,
            f"The request body must be JSON sent with the header Content-Type: application/json "
            f"(this one says {kind}; with curl, add -H 'Content-Type: application/json').",
            code="unsupported_media_type",
        )


def validate_request(body: Any) -> ChatCompletionRequest:
    """A chat-completions body (parsed JSON) -> the request; ApiError (400) when invalid."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        message, param, code = explain(exc)
        raise ApiError(400, message, param=param, code=code) from None


def request_config(
    chat: ChatCompletionRequest, context_length: int, sampling: Sampling | None = None
) -> GenerationConfig:
    try:
        return chat.config(context_length, sampling)
    except InputError as exc:  # a combination the engine refuses
        raise ApiError(400, str(exc)) from None


def parse_request(
    body: Any, context_length: int, sampling: Sampling | None = None
) -> tuple[Conversation, GenerationConfig, bool, bool]:
    """A chat-completions body -> (conversation, config, stream, include_usage); ApiError when invalid."""
    chat = validate_request(body)
    return chat.conversation(), request_config(chat, context_length, sampling), chat.stream, chat.include_usage


def pick_backend(backends: dict[str, Backend], name: str | None) -> Backend:
    """The loaded model called `name`; the first when the request names none (or "default")."""
    if name in (None, "", "default"):
        return next(iter(backends.values()))
    if name not in backends:
        raise ApiError(
            404,
            f"The model {name!r} does not exist on this server; it serves {', '.join(backends)} "
            "(GET /v1/models lists them).",
            param="model",
            code="model_not_found",
        )
    return backends[name]


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
    return {
        "prompt_tokens": info.prompt_tokens,
        "completion_tokens": info.new_tokens,
        "total_tokens": info.prompt_tokens + info.new_tokens,
    }


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
    body = {
        **head,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(reply.info)}],
        "usage": _usage(reply.info),
    }
    if reply.info.observations:
        body["observations"] = reply.info.observations  # extension: what offline tools saw
    return JSONResponse(body)


async def _events(reply: _Reply, first, request: Request, head: dict, include_usage: bool):
    def chunk(delta: dict, finish: str | None = None) -> str:
        return _sse(
            {
                **head,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

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


async def _admit(request: Request, backend_provider: BackendProvider, authenticate: Authenticate | None):
    """The backends this request may use, {name: Backend}; ApiError 401 without a valid login, 503 with none."""
    if authenticate is not None:
        credentials = _credentials(request.headers.get("authorization", ""))
        allowed = credentials is not None and await anyio.to_thread.run_sync(authenticate, *credentials)
        if not allowed:
            raise ApiError(
                401,
                "Sign in: send HTTP Basic credentials or `Authorization: Bearer "
                "USERNAME:PASSWORD` (the SDK's api_key) for an account of this app.",
                "authentication_error",
                code="invalid_api_key",
            )
    loaded = backend_provider()
    backends = dict(loaded) if isinstance(loaded, Mapping) else {loaded.name: loaded} if loaded else {}
    if not backends:
        raise ApiError(503, "No model is loaded yet; try again in a moment.", "server_error", code="model_not_loaded")
    return backends


def _describe(backend: Backend, created: int) -> dict:
    """One entry of GET /v1/models, with our `capabilities` extension."""
    caps = backend.capabilities
    return {
        "id": backend.name,
        "object": "model",
        "created": created,
        "owned_by": "multimodal-chat",
        "capabilities": {
            "images": caps.images,
            "described_images": caps.describes_images,
            "audio": caps.audio,
            "context_length": caps.context_length,
        },
    }


async def _read_body(request: Request) -> object:
    """The request's JSON body; the size and the Content-Type are checked before anything is parsed."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise ApiError(413, f"The request is over {MAX_BODY_BYTES // 2**20} MiB; send smaller media.")
    _require_json(request)
    try:
        return json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.") from None


async def _chat_completion(request: Request, backends: dict[str, Backend]):
    """POST /v1/chat/completions for admitted backends: one JSON reply, or server-sent events."""
    chat = validate_request(await _read_body(request))
    backend = pick_backend(backends, chat.model)
    context = await anyio.to_thread.run_sync(lambda: backend.capabilities.context_length)
    conversation, config = chat.conversation(), request_config(chat, context, backend.sampling)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": backend.name}
    reply = _Reply(backend, conversation, config)
    if not chat.stream:
        return await _complete(reply, request, head)
    try:
        first = await reply.next()  # bad input fails here, before any header is sent
    except BaseException:
        await reply.close()
        raise
    return StreamingResponse(
        _events(reply, first, request, head, chat.include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def build_api_router(backend_provider: BackendProvider, authenticate: Authenticate | None = None) -> APIRouter:
    """The /v1 routes, served by `backend_provider()`: one Backend, a {name: Backend} dict (the
    request's `model` picks one, else the first answers), or None while no model is loaded."""
    router = APIRouter(prefix="/v1")
    created = int(time.time())

    @router.get("/models")
    async def list_models(request: Request):
        try:
            backends = await _admit(request, backend_provider, authenticate)
            listed = await anyio.to_thread.run_sync(lambda: [_describe(b, created) for b in backends.values()])
            return {"object": "list", "data": listed}
        except ApiError as exc:
            return exc.response()

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        try:
            backends = await _admit(request, backend_provider, authenticate)
            if model_id not in backends:
                raise ApiError(
                    404,
                    f"No model {model_id!r}; this server runs {', '.join(backends)}.",
                    param="model",
                    code="model_not_found",
                )
            return await anyio.to_thread.run_sync(_describe, backends[model_id], created)
        except ApiError as exc:
            return exc.response()

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        try:
            return await _chat_completion(request, await _admit(request, backend_provider, authenticate))
        except Exception as exc:
            return _engine_error(exc).response()

    return router


def create_api_app(
    backend: Backend | Mapping[str, Backend] | BackendProvider, authenticate: Authenticate | None = None
) -> FastAPI:
    """A FastAPI app serving only /v1 (tests, or serving models without the UI)."""
    provider = (lambda: backend) if isinstance(backend, (Backend, Mapping)) else backend
    app = FastAPI(title="multimodal-chat OpenAI-compatible API")
    app.include_router(build_api_router(provider, authenticate))
    return app
