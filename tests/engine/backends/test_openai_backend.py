"""Our OpenAI client backend against our own /v1 over loopback, and against servers that are
down, slow, flaky or refuse the key."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from backend_helpers import GREEDY, EchoBackend, free_port
from fastapi.responses import JSONResponse

from chat_app.api import create_api_app
from engine.backends import Backend, BackendError, load_backend
from engine.backends.openai_client import OpenAIBackend
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo, Turn


def ask(text: str = "hello there", system: str = "", **media) -> Conversation:
    return Conversation(system, [Turn("user", text, **media)])


def reply(backend, conversation, config=GREEDY, **kwargs) -> tuple[str, ReplyInfo]:
    info = ReplyInfo()
    return "".join(backend.stream(conversation, config, info=info, **kwargs)), info


def test_remote_reply_equals_the_local_model(serve, llama_backend):
    url = serve(create_api_app(llama_backend))
    remote = load_backend(f"openai:{url}/v1#hf:tiny-llama")
    assert isinstance(remote, OpenAIBackend) and isinstance(remote, Backend) and remote.name == "openai:hf:tiny-llama"
    assert remote.capabilities == llama_backend.capabilities  # read from our /v1/models extension
    conversation = Conversation("Be brief.", [Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "how?")])
    local_text, local_info = reply(llama_backend, conversation)
    text, info = reply(remote, conversation)
    assert text == local_text and info.finish_reason == local_info.finish_reason
    assert (info.prompt_tokens, info.new_tokens) == (local_info.prompt_tokens, local_info.new_tokens)
    stop = local_text[4:6]
    config = GenerationConfig(max_new_tokens=16, temperature=0.0, stop=(stop,), top_k=5, repetition_penalty=1.1)
    assert reply(remote, conversation, config)[0] == reply(llama_backend, conversation, config)[0]
    first = load_backend(f"openai:{url}/v1")  # no #MODEL: the server's first model
    assert first.capabilities.context_length == 256 and first.name == "openai:hf:tiny-llama"


def test_images_and_audio_travel_as_parts(serve, llava_backend, image_jpeg_exif_rotated, speech_flac_44k_stereo):
    echo = EchoBackend()
    remote = OpenAIBackend(serve(create_api_app(echo)) + "/v1", "echo")
    text, _ = reply(remote, ask("look", images=[image_jpeg_exif_rotated], audio=[speech_flac_44k_stereo]))
    assert text == "echo: look | images=1 audio=1 "
    from engine.preprocess import read_audio, read_image

    turn = echo.last[0].turns[-1]
    assert read_image(turn.images[0]).size == (96, 128)  # sent upright (EXIF applied), as PNG
    assert turn.audio[0][:4] == b"RIFF"  # 16 kHz mono WAV
    assert abs(len(read_audio(turn.audio[0])) - len(read_audio(speech_flac_44k_stereo))) < 160
    vision = OpenAIBackend(serve(create_api_app(llava_backend)) + "/v1")
    assert (
        reply(vision, ask("what?", images=[image_jpeg_exif_rotated]))[0]
        == reply(llava_backend, ask("what?", images=[image_jpeg_exif_rotated]))[0]
    )


def test_text_only_server_gets_observations_and_transcripts(serve, image_png, speech_wav_16k):
    echo = EchoBackend(capabilities=EchoBackend().capabilities.__class__(images=False, audio=False, context_length=512))
    remote = OpenAIBackend(serve(create_api_app(echo)) + "/v1", transcriber=lambda source: "turn left")
    text, info = reply(remote, ask("what?", images=[image_png], audio=[speech_wav_16k]))
    assert text.startswith("echo: [image 1: text: none; faces: 0; colors: white") and "images=0 audio=0" in text
    assert "[audio 1: heard: turn left]" in text and info.observations[-1].startswith("notice:")


def test_server_down_is_retried_then_explained():
    port = free_port()  # nothing listens here any more
    remote = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", retries=2)
    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"not reachable \(connection refused\) \(tried 3 times\).*running"):
        reply(remote, ask())
    assert time.perf_counter() - started < 5
    assert remote.capabilities.images  # defaults while the server cannot be asked


@pytest.mark.slow
def test_slow_server_times_out_with_bounded_retries():
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        remote = OpenAIBackend(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", "m", timeout=0.3, retries=1)
        started = time.perf_counter()
        with pytest.raises(BackendError, match=r"did not answer within 0.3 s \(tried 2 times\).*overloaded"):
            reply(remote, ask())
        assert time.perf_counter() - started < 5


def test_flaky_server_is_retried(serve):
    app, calls = create_api_app(EchoBackend()), []

    @app.middleware("http")
    async def fail_twice(request, call_next):
        calls.append(request.url.path)
        if request.url.path.endswith("/chat/completions") and calls.count(request.url.path) <= 2:
            return JSONResponse({"error": {"message": "busy"}}, status_code=503, headers={"Retry-After": "0"})
        return await call_next(request)

    remote = OpenAIBackend(serve(app) + "/v1", "echo", retries=2)
    assert reply(remote, ask("hi"))[0] == "echo: hi | images=0 audio=0 "
    assert calls.count("/v1/chat/completions") == 3
    calls.clear()
    remote.retries = 1
    with pytest.raises(BackendError, match=r"answered HTTP 503 \(busy\) \(tried 2 times\)"):
        reply(remote, ask("hi"))


def test_key_from_environment_and_refusals(serve, monkeypatch):
    url = serve(create_api_app(EchoBackend(), authenticate=lambda user, password: password == "pw")) + "/v1"
    with pytest.raises(BackendError, match="refused the API key.*OPENAI_API_KEY"):
        reply(OpenAIBackend(url, "echo", api_key="bob:nope"), ask())
    monkeypatch.setenv("OPENAI_API_KEY", "bob:pw")
    assert reply(load_backend(f"openai:{url}#echo"), ask("hi"))[0].startswith("echo: hi")
    with pytest.raises(InputError, match="refused the request: Only n=1"):
        reply(_server_side_400(url), ask())


def _server_side_400(url):
    """A backend whose requests the server refuses: the server says why (n=2 is not supported)."""
    backend = OpenAIBackend(url, "echo")
    payload = backend._payload

    def with_n(*args):
        body = payload(*args)
        body["n"] = 2
        return body

    backend._payload = with_n
    return backend


def test_cancel_and_mid_stream_failure(serve):
    echo = EchoBackend(endless=True)
    remote = OpenAIBackend(serve(create_api_app(echo)) + "/v1", "echo")
    cancel, info = threading.Event(), ReplyInfo()
    for i, _ in enumerate(remote.stream(ask("go"), GREEDY, cancel=cancel, info=info)):
        if i == 3:
            cancel.set()
    assert info.finish_reason == "cancelled" and echo.closed.wait(10)
    failing = OpenAIBackend(serve(create_api_app(EchoBackend(fail_after=2))) + "/v1", "echo")
    pieces = []
    with pytest.raises(BackendError, match="failed while replying: The echo server fell over"):
        for piece in failing.stream(ask("go")):
            pieces.append(piece)
    assert pieces == ["echo: ", "go "]
