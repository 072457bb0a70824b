"""Our /v1 API through the official `openai` SDK on a real uvicorn server: text, images,
audio, streaming, usage, auth, and OpenAI-shaped errors."""

from __future__ import annotations

import base64
import subprocess
import sys
import time

import httpx
import openai
import pytest
from backend_helpers import EchoBackend

from chat_app.api import create_api_app


def data_url(path, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def audio_part(path, fmt="wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(path.read_bytes()).decode(), "format": fmt}}


def client_for(url: str, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def echo(serve_module):
    backend = EchoBackend()
    return backend, client_for(serve_module(create_api_app(backend)))


def test_models_list_the_loaded_backend(echo):
    backend, client = echo
    models = client.models.list().data
    assert [m.id for m in models] == ["echo"]
    assert models[0].capabilities == {"images": True, "described_images": False, "audio": True, "context_length": 1024}
    assert client.models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_text_completion_with_options(echo):
    backend, client = echo
    result = client.chat.completions.create(
        model="echo",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        max_tokens=9,
        temperature=0,
        top_p=0.5,
        stop=["zzz"],
        seed=3,
        extra_body={"top_k": 4},
    )
    assert result.choices[0].message.content == "echo: hello there | images=0 audio=0 "
    assert result.choices[0].finish_reason == "stop" and result.model == "echo"
    assert result.usage.prompt_tokens == 7 and result.usage.completion_tokens == 6
    conversation, config = backend.last
    assert conversation.system_prompt == "Be brief."
    assert (config.max_new_tokens, config.temperature, config.top_p, config.top_k, config.stop, config.seed) == (
        9,
        0.0,
        0.5,
        4,
        ("zzz",),
        3,
    )
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], stop="\n\n")
    assert backend.last[1].stop == ("\n\n",) and backend.last[1].max_new_tokens == 256  # GenerationConfig's default


def test_streaming_chunks_end_with_usage_and_done(echo):
    _, client = echo
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "hi you"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hi you | images=0 audio=0 "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    raw = httpx.post(
        str(client.base_url) + "chat/completions",
        timeout=30,
        json={"messages": [{"role": "user", "content": "x"}], "stream": True},
    ).text
    assert raw.rstrip().endswith("data: [DONE]")


def test_image_and_audio_parts_reach_the_backend(echo, image_png, image_jpeg_exif_rotated, speech_wav_16k, speech_mp3):
    backend, client = echo
    content = [
        {"type": "text", "text": "look and listen"},
        {"type": "image_url", "image_url": {"url": data_url(image_png)}},
        {"type": "image_url", "image_url": {"url": data_url(image_jpeg_exif_rotated, "image/jpeg")}},
        audio_part(speech_wav_16k),
        audio_part(speech_mp3, "mp3"),
    ]
    result = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": content}])
    assert result.choices[0].message.content == "echo: look and listen | images=2 audio=2 "
    turn = backend.last[0].turns[-1]
    assert turn.images[0] == image_png.read_bytes() and turn.audio[1] == speech_mp3.read_bytes()


@pytest.mark.parametrize(
    "message, match",
    [
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]},
            "does not download images",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]},
            "not valid base64",
        ),
        ({"role": "user", "content": [{"type": "video_url", "video_url": {"url": "x"}}]}, "unsupported type"),
        ({"role": "tool", "content": "42", "tool_call_id": "a"}, "not supported"),
        ({"role": "assistant", "content": "hello"}, "end with a user turn"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {"format": "wav"}}]}, "base64 string"),
    ],
)
def test_bad_messages_are_400_with_openai_errors(echo, message, match):
    _, client = echo
    with pytest.raises(openai.BadRequestError, match=match) as caught:
        client.chat.completions.create(model="echo", messages=[message])
    assert caught.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "options, match",
    [
        ({"n": 2}, "n=1"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"frequency_penalty": 0.5}, "repetition_penalty"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "Tool calls"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"stop": [""]}, "stop"),
        ({"temperature": 2.5}, "temperature must be at most 2"),
        ({"max_tokens": 3.0}, "max_tokens must be an integer"),
        ({"temperature": "0.5"}, "temperature must be a number"),
        ({"extra_body": {"top_k": -1}}, "top_k must be at least 0"),
    ],
)
def test_bad_options_are_400(echo, options, match):
    _, client = echo
    with pytest.raises(openai.BadRequestError, match=match):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], **options)


def test_corrupt_media_and_bad_bodies(echo, image_corrupt, not_audio_wav):
    _, client = echo
    for part in (
        {"type": "image_url", "image_url": {"url": data_url(image_corrupt, "image/jpeg")}},
        audio_part(not_audio_wav),
    ):
        with pytest.raises(openai.BadRequestError, match="uploaded"):  # the engine's own message
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": [part]}], stream=True)
    url = str(client.base_url) + "chat/completions"
    response = httpx.post(url, content=b"{not json", timeout=30)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    assert httpx.post(url, json={"messages": []}, timeout=30).json()["error"]["param"] == "messages"


def test_auth_basic_and_bearer(serve):
    app = create_api_app(EchoBackend(), authenticate=lambda user, password: (user, password) == ("alice", "s3cret"))
    url = serve(app)
    with pytest.raises(openai.AuthenticationError):
        client_for(url, api_key="alice:wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client_for(url, api_key="s3cret").models.list()
    answer = client_for(url, api_key="alice:s3cret").chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content.startswith("echo: hi")
    assert httpx.get(url + "/v1/models", auth=("alice", "s3cret")).status_code == 200
    response = httpx.get(url + "/v1/models")
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_no_model_loaded_is_503(serve):
    client = client_for(serve(create_api_app(lambda: None)))
    with pytest.raises(openai.InternalServerError, match="No model is loaded"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])


def test_backend_failures(serve):
    client = client_for(serve(create_api_app(EchoBackend(fail_after=0))))
    with pytest.raises(openai.InternalServerError, match="fell over") as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503
    client = client_for(serve(create_api_app(EchoBackend(fail_after=2))))
    stream = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError, match="fell over"):
        list(stream)


def test_client_disconnect_cancels_the_reply(serve):
    backend = EchoBackend(endless=True)
    client = client_for(serve(create_api_app(backend)))
    stream = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "go"}], stream=True)
    for i, _ in enumerate(stream):
        if i == 5:
            break
    stream.close()
    assert backend.closed.wait(10)  # the reply generator was closed: generation stopped


def test_real_models_behind_the_api(serve, llava_backend, llama_asr_backend, image_png, speech_wav_16k):
    from engine.types import Conversation, GenerationConfig, Turn

    client = client_for(serve(create_api_app(llava_backend)))
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": data_url(image_png)}},
    ]
    answer = client.chat.completions.create(
        model=llava_backend.name, messages=[{"role": "user", "content": content}], max_tokens=8, temperature=0
    )
    direct = "".join(
        llava_backend.stream(
            Conversation("", [Turn("user", "what is this?", images=[image_png])]),
            GenerationConfig(max_new_tokens=8, temperature=0),
        )
    )
    assert answer.choices[0].message.content == direct and answer.model == "hf:tiny-llava"
    client = client_for(serve(create_api_app(llama_asr_backend)))
    content = [
        {"type": "text", "text": "what?"},
        audio_part(speech_wav_16k),
        {"type": "image_url", "image_url": {"url": data_url(image_png)}},
    ]
    started = time.perf_counter()
    answer = client.chat.completions.with_raw_response.create(
        model=llama_asr_backend.name, messages=[{"role": "user", "content": content}], max_tokens=8, temperature=0
    ).parse()
    assert time.perf_counter() - started < 30
    observations = answer.model_extra["observations"]
    assert observations[0].startswith("image 1:") and observations[1].startswith("audio 1: heard: the")
    assert observations[2].startswith("notice:")


def test_api_module_does_not_import_torch():
    code = "import sys, chat_app.api; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_mounted_beside_gradio_with_the_same_auth(serve):
    import gradio as gr
    from fastapi import FastAPI

    from chat_app.api import build_api_router

    def check(user, password):
        return (user, password) == ("alice", "pw")

    app = FastAPI()
    app.include_router(build_api_router(lambda: EchoBackend(), authenticate=check))  # before Gradio's catch-all
    with gr.Blocks() as demo:
        gr.Markdown("chat")
    url = serve(gr.mount_gradio_app(app, demo, path="/", auth=check))
    answer = client_for(url, api_key="alice:pw").chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content.startswith("echo: hi")
    assert httpx.get(url + "/v1/models").status_code == 401
    assert httpx.get(url + "/").status_code == 200  # the UI is still served (its login page)


def test_several_models_are_listed_and_picked_by_name(serve):
    first, second = EchoBackend("first"), EchoBackend("second")
    client = client_for(serve(create_api_app(lambda: {"first": first, "second": second})))
    assert [m.id for m in client.models.list().data] == ["first", "second"]
    assert client.chat.completions.create(model="second", messages=[{"role": "user", "content": "a"}]).model == "second"
    with pytest.raises(openai.NotFoundError, match="'gpt-4o' does not exist.*serves first, second") as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
    assert (caught.value.body["code"], caught.value.body["param"]) == ("model_not_found", "model")
    for unnamed in ({}, {"model": "default"}):  # no name, or what openai_client sends knowing none: the first
        answer = httpx.post(
            str(client.base_url) + "chat/completions",
            timeout=30,
            json={"messages": [{"role": "user", "content": "a"}], **unnamed},
        ).json()
        assert answer["model"] == "first"
    assert second.last is not None and client.models.retrieve("second").id == "second"


def test_builtin_model_behind_the_api(serve, image_png, speech_wav_16k):
    from tiny_models import tiny_backend

    from engine.types import Conversation, GenerationConfig, Turn

    backend = tiny_backend()
    client = client_for(serve(create_api_app(backend)))
    content = [
        {"type": "text", "text": "hello"},
        {"type": "image_url", "image_url": {"url": data_url(image_png)}},
        audio_part(speech_wav_16k),
    ]
    stream = client.chat.completions.create(
        model="builtin:tiny", messages=[{"role": "user", "content": content}], max_tokens=12, temperature=0, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    direct = "".join(
        backend.stream(
            Conversation("", [Turn("user", "hello", images=[image_png], audio=[speech_wav_16k])]),
            GenerationConfig(max_new_tokens=12, temperature=0),
        )
    )
    assert text == direct


def post_raw(client, fields: str = "", content_type: str | None = "application/json") -> httpx.Response:
    """POST {"messages": [hi], FIELDS} as written: json.dumps would not write NaN, nor send it as text/plain."""
    text = '{"messages": [{"role": "user", "content": "hi"}]' + (f", {fields}" if fields else "") + "}"
    headers = {"Content-Type": content_type} if content_type else {}
    return httpx.post(str(client.base_url) + "chat/completions", content=text, headers=headers, timeout=30)


@pytest.mark.parametrize(
    "option, param, message",
    [
        ('"temperature": NaN', "temperature", "temperature must be a finite number, not nan."),
        ('"temperature": Infinity', "temperature", "temperature must be a finite number, not inf."),
        ('"top_p": NaN', "top_p", "top_p must be a finite number, not nan."),
        (f'"seed": {2**70}', "seed", f"seed must be at most {2**63 - 1}, not {2**70}."),
        ('"repetition_penalty": 1e308', "repetition_penalty", "repetition_penalty must be at most 10.0, not 1e+308."),
    ],
)
def test_out_of_range_numbers_are_400_not_server_errors(echo, option, param, message):
    _, client = echo
    response = post_raw(client, option)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }


def test_huge_max_tokens_is_clamped_and_huge_top_k_passed_on(echo):
    backend, client = echo
    response = post_raw(client, f'"max_tokens": {10**12}, "top_k": {10**12}')
    assert response.status_code == 200
    config = backend.last[1]
    assert config.max_new_tokens == 1024  # the model's context length
    assert config.top_k == 10**12  # the engine keeps min(top_k, vocabulary): no top-k filter


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_415(echo, content_type):
    _, client = echo
    response = post_raw(client, content_type=content_type)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and error["type"] == "invalid_request_error"
    assert f"Content-Type: application/json (this one says {content_type};" in error["message"]
    assert post_raw(client, content_type="application/json; charset=utf-8").status_code == 200
    assert post_raw(client, content_type=None).status_code == 200  # no Content-Type at all: read as JSON


def test_unknown_model_is_404_model_not_found(echo):
    _, client = echo
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body == {
        "message": "The model 'gpt-9' does not exist on this server; it serves echo (GET /v1/models lists them).",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
