"""Fixtures for the backend and API tests: tiny transformers models saved to disk, loaded once
through `load_backend`, and real uvicorn servers on loopback (helpers in backend_helpers.py).

    tiny_llama_dir, tiny_llava_dir, tiny_whisper_dir   folders written by tests/engine/backends/tiny_hf.py
    llama_backend, llava_backend                       HFBackend loaded from them (CPU, speech off)
    llama_asr_backend                                  the Llama hearing through the tiny Whisper
    serve(app) -> "http://127.0.0.1:PORT"              a uvicorn server in a thread, stopped after the test
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download, whatever the caller's environment
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import tiny_hf  # noqa: E402
from backend_helpers import Servers  # noqa: E402


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_models")


@pytest.fixture(scope="session")
def tiny_llama_dir(hf_dir):
    return tiny_hf.save_tiny_llama(hf_dir / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_llava_dir(hf_dir):
    return tiny_hf.save_tiny_llava(hf_dir / "tiny-llava")


@pytest.fixture(scope="session")
def tiny_whisper_dir(hf_dir):
    return tiny_hf.save_tiny_whisper(hf_dir / "tiny-whisper")


@pytest.fixture(scope="session")
def llama_backend(tiny_llama_dir):
    from engine.backends import load_backend

    return load_backend(str(tiny_llama_dir), device="cpu", asr=False)


@pytest.fixture(scope="session")
def llava_backend(tiny_llava_dir):
    from engine.backends import load_backend

    return load_backend(str(tiny_llava_dir), device="cpu", asr=False)


@pytest.fixture(scope="session")
def llama_asr_backend(tiny_llama_dir, tiny_whisper_dir):
    from engine.backends import load_backend

    return load_backend(str(tiny_llama_dir), device="cpu", asr=str(tiny_whisper_dir))


@pytest.fixture
def serve():
    """serve(app) starts uvicorn on a free loopback port and returns its base URL."""
    servers = Servers()
    yield servers.start
    servers.stop()


@pytest.fixture(scope="module")
def serve_module():
    """Like `serve`, for servers shared by a whole test module."""
    servers = Servers()
    yield servers.start
    servers.stop()
