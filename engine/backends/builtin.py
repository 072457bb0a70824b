"""The built-in model as a Backend: loaded once, kept on its device, shared by all callers.

    backend = BuiltinBackend.from_directory("assets/models/builtin", device="auto")
    text = "".join(backend.stream(conversation, GenerationConfig(temperature=0)))

Each call builds its own prompt and cache, so any number of threads may stream at once
from the one copy of the weights. `generate_batch` decodes several conversations as one
batch (each row at its own position).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from engine.backends.base import Capabilities, Sampling
from engine.generation import generate
from engine.loading import load_checkpoint, load_sampling
from engine.model import MultimodalModel
from engine.native_step import prepare as prepare_native_step
from engine.prompt import build_prompt, collate
from engine.streaming import stream_text
from engine.tokenizer import ChatTokenizer
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo


class BuiltinBackend:
    def __init__(
        self, model: MultimodalModel, tokenizer: ChatTokenizer, name: str = "builtin", sampling: Sampling | None = None
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.config = model.config
        self.capabilities = Capabilities(
            images=True,
            audio=True,
            context_length=model.config.max_seq_len,
            transcribes_audio="asr" in model.config.observations,
        )
        self.sampling = sampling
        prepare_native_step(self.model)

    @classmethod
    def from_directory(cls, directory: str | Path, device: str = "auto") -> BuiltinBackend:
        model, tokenizer = load_checkpoint(directory, device=device)
        sampling = load_sampling(directory)
        return cls(
            model, tokenizer, name=f"builtin:{Path(directory).name}", sampling=Sampling(*sampling) if sampling else None
        )

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    def _prompt(self, conversation: Conversation, config: GenerationConfig):
        if not conversation.turns or conversation.turns[-1].role != "user":
            raise InputError("The conversation must end with a user turn to get a reply.")
        budget = max(self.config.max_seq_len - config.max_new_tokens, self.config.max_seq_len // 2)
        return build_prompt(conversation, self.tokenizer, self.config, max_tokens=budget)

    def stream(
        self,
        conversation: Conversation,
        config: GenerationConfig = GenerationConfig(),
        cancel: threading.Event | None = None,
        info: ReplyInfo | None = None,
    ) -> Iterator[str]:
        """Yield the reply's text pieces; raises InputError before the first piece on bad input."""
        info = info if info is not None else ReplyInfo()
        started = time.perf_counter()
        prompt = self._prompt(conversation, config)
        info.prompt_tokens, info.dropped_turns = len(prompt), prompt.dropped_turns
        info.observations = list(prompt.observations)
        inputs = collate([prompt], self.device, self.tokenizer.pad_id, self.model.lm_head.weight.dtype)
        tokens = generate(
            self.model, inputs, config, {self.tokenizer.end_id, self.tokenizer.eos_id}, cancel, self.tokenizer.pad_id
        )
        try:
            yield from stream_text(tokens, self.tokenizer, config.stop, info, started)
        except GeneratorExit:
            info.finish_reason = "cancelled"
            raise
        if cancel is not None and cancel.is_set():
            info.finish_reason = "cancelled"

    def generate_batch(self, conversations: list[Conversation], config: GenerationConfig) -> list[str]:
        """Replies to several conversations decoded together as one batch."""
        prompts = [self._prompt(c, config) for c in conversations]
        inputs = collate(prompts, self.device, self.tokenizer.pad_id, self.model.lm_head.weight.dtype)
        end_ids = {self.tokenizer.end_id, self.tokenizer.eos_id}
        decoders = [self.tokenizer.incremental_decoder() for _ in prompts]
        replies = [""] * len(prompts)
        finished = [False] * len(prompts)
        for tokens in generate(self.model, inputs, config, end_ids, pad_id=self.tokenizer.pad_id):
            for row, token in enumerate(tokens.tolist()):
                finished[row] = finished[row] or token in end_ids
                if not finished[row]:
                    replies[row] += decoders[row].push(token)
        return [
            reply + ("" if done else decoder.flush().rstrip("\ufffd"))
            for reply, done, decoder in zip(replies, finished, decoders)
        ]
