"""Any Hugging Face transformers chat model as a Backend: vision-language or text-only.

    backend = HFBackend.from_pretrained("HuggingFaceTB/SmolVLM-256M-Instruct", device="auto")
    backend = HFBackend.from_pretrained("/models/tiny-llama", transcriber=WhisperTranscriber(...))
    for piece in backend.stream(conversation, GenerationConfig(temperature=0), cancel=event, info=info):
        ...

- Image-text-to-text models (`AutoModelForImageTextToText` + `AutoProcessor`: LLaVA, Idefics3/
  SmolVLM, Qwen2.5-VL ...) see the images through the model's own chat template.
- Text-only LLMs (`AutoModelForCausalLM` + tokenizer) get images as observations from offline
  tools (engine.observe) with a notice in `ReplyInfo.observations`.
- Audio reaches either kind as a transcript when a transcriber (e.g. `WhisperTranscriber`) is
  given; `capabilities.audio` says whether one is.

The prompt is rendered by the model's chat template with `sanitize_control_tokens=True`, so
control tokens a person types (`<|im_end|>`, `<image>`) stay plain text; the oldest turns are
dropped to fit the context window. Generation runs in a worker thread (`model.generate` with a
`TextIteratorStreamer`); a StoppingCriteria watches a threading.Event, so `cancel`, a stop
string or closing the generator really stops `generate`, and the thread is joined in `finally`.

Concurrency: one copy of the weights; any number of threads may call `stream`. Prompt building
is serialised by one lock (fast tokenizers are not safe to share while they change settings)
and `generate` by another (the RNG used by `seed` is global and GPU memory is shared). A caller
waits in its own thread for its turn; nothing blocks an event loop that runs `stream` in a
worker thread, as the API and the web app do.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from engine.backends.base import Capabilities, Sampling
from engine.backends.errors import OOM_ADVICE, BackendError
from engine.backends.hf_loading import context_length, load_pretrained
from engine.backends.media import Transcriber, check_audio, media_needs, observations
from engine.prompt import ContextTooLong  # the built-in prompt's "does not fit": the app treats both alike
from engine.streaming import _held_back
from engine.turns import prepare_turns
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo


class _EventStop(StoppingCriteria):
    """Stops `generate` at the next step once any of the events is set."""

    def __init__(self, *events: threading.Event | None):
        self.events = [e for e in events if e is not None]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _CountingStreamer(TextIteratorStreamer):
    """TextIteratorStreamer that also counts generated tokens and times the first one."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.new_tokens, self.first_token_at, self.last_token = 0, None, None

    def put(self, value):
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.new_tokens += int(value.numel())
            self.last_token = int(value.reshape(-1)[-1])
            self.first_token_at = self.first_token_at or time.perf_counter()
        super().put(value)


class HFBackend:
    def __init__(
        self,
        model,
        processor,
        vision: bool,
        name: str = "hf",
        transcriber: Transcriber | None = None,
        device: torch.device | None = None,
    ):
        self.model, self.processor, self.vision, self.name = model, processor, vision, name
        self.tokenizer = processor.tokenizer if vision else processor
        self.transcriber = transcriber  # its transcripts are cached with the prepared media (engine.turns)
        self.device = device or next(model.parameters()).device
        self.capabilities = Capabilities(
            images=vision,
            audio=transcriber is not None,
            context_length=context_length(model, self.tokenizer),
            describes_images=not vision,
        )
        try:  # a private copy decodes in the generate thread while prompts are tokenized
            self._stream_tokenizer = copy.deepcopy(self.tokenizer)
        except Exception:  # not copyable: decoding only reads it, so share it
            self._stream_tokenizer = self.tokenizer
        self._prompt_lock, self._generate_lock = threading.Lock(), threading.Lock()
        self._sanitize = True  # typed control tokens stay text, where the processor supports it
        generation = model.generation_config
        self.sampling = _sampling(generation)
        eos = generation.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        self._eos = eos
        pad = generation.pad_token_id if generation.pad_token_id is not None else self.tokenizer.pad_token_id
        self._pad = pad if pad is not None else (eos[0] if eos else None)

    @classmethod
    def from_pretrained(
        cls, spec: str | Path, device: str = "auto", transcriber: Transcriber | None = None
    ) -> HFBackend:
        """Load a hub id or a local folder once, onto `device` (see engine.backends.hf_loading)."""
        model, processor, kind, main = load_pretrained(str(spec), device)
        path = Path(str(spec)).expanduser()
        name = "hf:" + (path.name if path.is_dir() else str(spec))
        return cls(model, processor, vision=kind == "vision", name=name, transcriber=transcriber, device=main)

    # ------------------------------------------------------------------ prompt

    def _messages(self, conversation: Conversation) -> tuple[str, list[dict], list[str]]:
        """(system text, one message per turn with media decoded, the last turn's observations)."""
        turns = [t for t in conversation.turns if t.role != "system"]
        if not turns or turns[-1].role != "user":
            raise InputError("The conversation must end with a user turn to get a reply.")
        system = "\n\n".join(
            s for s in [conversation.system_prompt] + [t.text for t in conversation.turns if t.role == "system"] if s
        )
        check_audio(turns, self.transcriber, audio=False, model=self.name)
        prepared = prepare_turns(turns, media_needs(self.vision, False, self.transcriber))
        messages = []
        for turn in prepared:
            text = turn.text_with_notes()
            if self.vision:
                content = [{"type": "image", "image": image.picture} for image in turn.images]
                messages.append({"role": turn.role, "content": content + [{"type": "text", "text": text}]})
            else:
                messages.append({"role": turn.role, "content": text})
        return system, messages, observations(prepared, self.vision, self.name)

    def _render(self, system: str, messages: list[dict]):
        def wrap(text):
            return [{"type": "text", "text": text}] if self.vision else text

        head = [{"role": "system", "content": wrap(system)}] if system else []
        fresh = [{**m, "content": list(m["content"]) if self.vision else m["content"]} for m in messages]
        try:
            return self._apply(head + fresh)
        except Exception as exc:  # jinja2 TemplateError: e.g. "System role not supported"
            if not system:
                raise InputError(f"{self.name}'s chat template refused this conversation: {exc}") from None
        first = fresh[0]  # no system role in this template: put the system prompt in the first turn
        merged = (
            system + "\n\n" + first["content"]
            if not self.vision
            else [{"type": "text", "text": system + "\n\n"}] + first["content"]
        )
        try:
            return self._apply([{**first, "content": merged}] + fresh[1:])
        except Exception as exc:
            raise InputError(f"{self.name}'s chat template refused this conversation: {exc}") from None

    def _apply(self, messages: list[dict]):
        options = dict(add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        if self._sanitize:
            try:
                return self.processor.apply_chat_template(messages, sanitize_control_tokens=True, **options)
            except TypeError as exc:  # a processor that does not pass the option on to its tokenizer
                if "sanitize" not in str(exc):
                    raise
                self._sanitize = False
        return self.processor.apply_chat_template(messages, **options)

    def _prompt(self, conversation: Conversation, config: GenerationConfig, info: ReplyInfo):
        system, messages, notes = self._messages(conversation)
        context = self.capabilities.context_length
        budget = max(context - config.max_new_tokens, context // 2)
        first = 0
        with self._prompt_lock:
            while True:
                inputs = self._render(system, messages[first:])
                if inputs["input_ids"].shape[-1] <= budget:
                    break
                needed = inputs["input_ids"].shape[-1]
                first += 1
                while first < len(messages) and messages[first]["role"] != "user":
                    first += 1
                if first >= len(messages):
                    raise ContextTooLong(
                        f"The message is too long for this model: it needs {needed} tokens and the "
                        f"model reads at most {budget} here. Please shorten it or attach fewer files."
                    )
        info.prompt_tokens, info.dropped_turns, info.observations = int(inputs["input_ids"].shape[-1]), first, notes
        dtype = self.model.dtype
        return {
            k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }

    # ------------------------------------------------------------------ generation

    def _generate_kwargs(self, config: GenerationConfig) -> dict:
        kwargs = dict(max_new_tokens=config.max_new_tokens, eos_token_id=self._eos or None, pad_token_id=self._pad)
        if config.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = config.repetition_penalty
        if config.temperature == 0:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=config.temperature, top_k=config.top_k, top_p=config.top_p)
        return kwargs

    def _run(
        self, inputs: dict, kwargs: dict, seed: int | None, stop: _EventStop, streamer: _CountingStreamer, errors: list
    ) -> None:
        """Worker thread: wait for the model, generate, always end the stream."""
        stopped = lambda: any(e.is_set() for e in stop.events)  # noqa: E731
        try:
            while not self._generate_lock.acquire(timeout=0.05):
                if stopped():
                    return
            try:
                if not stopped():
                    if seed is not None:
                        torch.manual_seed(seed)
                    with torch.inference_mode():
                        self.model.generate(
                            **inputs, **kwargs, streamer=streamer, stopping_criteria=StoppingCriteriaList([stop])
                        )
            finally:
                self._generate_lock.release()
        except BaseException as exc:  # reported to the caller's thread
            errors.append(exc)
        finally:
            streamer.text_queue.put(streamer.stop_signal)  # a second end marker is harmless

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
        inputs = self._prompt(conversation, config, info)
        stop, errors = threading.Event(), []
        streamer = _CountingStreamer(self._stream_tokenizer)
        worker = threading.Thread(
            target=self._run,
            name="hf-generate",
            daemon=True,
            args=(inputs, self._generate_kwargs(config), config.seed, _EventStop(stop, cancel), streamer, errors),
        )
        worker.start()
        pending, stopped_by_text = "", False
        info.finish_reason = "cancelled"  # until the stream ends normally
        try:
            while cancel is None or not cancel.is_set():
                try:
                    piece = streamer.text_queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                if piece is streamer.stop_signal:
                    break
                pending += piece
                hits = [i for i in (pending.find(s) for s in config.stop) if i >= 0]
                if hits:
                    pending, stopped_by_text = pending[: min(hits)], True
                    stop.set()
                    break
                keep = _held_back(pending, config.stop)
                ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
                if ready:
                    yield ready
            if errors:
                raise _backend_error(errors[0], self.name)
            if pending:
                yield pending
            if cancel is not None and cancel.is_set() and not stopped_by_text:
                info.finish_reason = "cancelled"
            elif stopped_by_text or streamer.last_token in self._eos or streamer.new_tokens < config.max_new_tokens:
                info.finish_reason = "stop"
            else:
                info.finish_reason = "length"
        finally:
            stop.set()
            worker.join()
            info.new_tokens = streamer.new_tokens - (streamer.last_token in self._eos)  # the end marker not counted
            if streamer.first_token_at is not None:
                info.time_to_first_token_s = streamer.first_token_at - started
            info.total_time_s = time.perf_counter() - started


def _sampling(generation) -> Sampling | None:
    """The model folder's generation_config.json as decoding defaults (None when it has none:
    transformers then derives one from config.json, which says nothing about sampling)."""
    if generation is None or getattr(generation, "_from_model_config", False):
        return None
    if not generation.do_sample:
        return Sampling(temperature=0.0, top_p=1.0)
    temperature = generation.temperature if generation.temperature is not None else 1.0
    top_p = generation.top_p if generation.top_p is not None else 1.0
    return Sampling(temperature=min(max(float(temperature), 0.0), 2.0), top_p=min(max(float(top_p), 0.05), 1.0))


def _backend_error(exc: BaseException, name: str) -> Exception:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        return BackendError(f"{name} ran out of GPU memory while generating. " + OOM_ADVICE)
    if isinstance(exc, InputError):
        return exc
    return BackendError(f"{name} failed while generating ({type(exc).__name__}: {exc}).")
