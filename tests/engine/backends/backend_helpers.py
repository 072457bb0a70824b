"""Helpers for the backend and API tests (imported by name: `from backend_helpers import ...`).

GREEDY                         a short greedy GenerationConfig
EchoBackend                    says what it received; decodes media like the engine does
Servers().start(app) -> url    uvicorn servers on free loopback ports, in threads; stop() ends them
free_port()                    a loopback port nothing listens on (after the call)
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from engine import preprocess
from engine.backends.base import Capabilities
from engine.backends.errors import BackendError
from engine.types import GenerationConfig, InputError, ReplyInfo

GREEDY = GenerationConfig(max_new_tokens=16, temperature=0.0)


class EchoBackend:
    """Replies "echo: TEXT | images=N audio=M" word by word; decodes media like the engine does.

    `fail_after` raises BackendError after that many pieces; `endless` keeps yielding until
    cancelled (for disconnect tests); `cancelled` records that a cancel arrived.
    """

    def __init__(
        self,
        name: str = "echo",
        fail_after: int | None = None,
        endless: bool = False,
        capabilities: Capabilities = Capabilities(images=True, audio=True, context_length=1024),
    ):
        self.name, self.capabilities, self.sampling = name, capabilities, None
        self.fail_after, self.endless = fail_after, endless
        self.cancelled, self.closed = threading.Event(), threading.Event()
        self.last = None  # (conversation, config) of the latest request

    def stream(self, conversation, config=GenerationConfig(), cancel=None, info=None):
        info = info if info is not None else ReplyInfo()
        self.last = (conversation, config)
        turns = conversation.turns
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a user turn to get a reply.")
        turn = turns[-1]
        images = [preprocess.read_image(source) for source in turn.images]
        audio = [preprocess.read_audio(source) for source in turn.audio]
        words = f"echo: {turn.text} | images={len(images)} audio={len(audio)}".split(" ")
        info.prompt_tokens, info.finish_reason = 7, "stop"
        try:
            count = 0
            while True:
                for word in words:
                    if cancel is not None and cancel.is_set():
                        self.cancelled.set()
                        info.finish_reason = "cancelled"
                        return
                    if self.fail_after is not None and count >= self.fail_after:
                        raise BackendError("The echo server fell over.")
                    count += 1
                    info.new_tokens = count
                    yield word + " "
                    if self.endless:
                        time.sleep(0.01)
                if not self.endless:
                    return
        finally:
            self.closed.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    """Starts uvicorn servers on free loopback ports, each in its own thread; stop() ends them all."""

    def __init__(self):
        self.running = []

    def start(self, app) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        self.running.append((server, thread, sock))
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        for server, _, _ in self.running:
            server.should_exit = True
        for _, thread, sock in self.running:
            thread.join(timeout=10)
            sock.close()
