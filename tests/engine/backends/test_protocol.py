"""Every real backend is a `Backend` (the protocol the app is written against)."""

from backend_helpers import free_port
from tiny_models import tiny_backend

from engine.backends import Backend
from engine.backends.builtin import BuiltinBackend
from engine.backends.hf import HFBackend
from engine.backends.openai_client import OpenAIBackend


def test_builtin_hf_and_openai_backends_satisfy_the_protocol(llama_backend):
    remote = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", retries=0)  # down: default capabilities
    backends = [tiny_backend(), llama_backend, remote]
    assert [type(b) for b in backends] == [BuiltinBackend, HFBackend, OpenAIBackend]
    for backend in backends:
        assert isinstance(backend, Backend), type(backend).__name__
        assert backend.capabilities.context_length > 0 and isinstance(backend.name, str)
