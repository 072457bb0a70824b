"""Conversation → token ids and media tensors, within the model's context window.

    prompt = build_prompt(conversation, tokenizer, config, max_tokens=900)   # prepare_turns + prompt_from_turns
    prompt = prompt_from_turns(system_prompt, prepared_turns, tokenizer, config)   # no I/O: tokenizing only
    prompt.dropped_turns      # oldest turns left out to fit (the system prompt is always kept)
    inputs = collate([prompt], device)   # -> ModelInputs for the model

Layout of one sequence (the chat template):

    <|bos|> <|system|> text <|end|> <|user|> [media] text <|end|> <|assistant|> reply <|end|> ...

`[media]` is, in `concat` fusion, image_tokens copies of <|image|> per image and
audio_tokens(frames) copies of <|audio|> per clip; in `sum`/`gated` fusion, one <|media|> slot.
With `ModelConfig.media_after_text` a user turn is `<|user|> text [media] <|end|>` instead:
the decoder is causal, so only then can the picture's tokens see the question asked about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from engine.config import ModelConfig
from engine.fusion import AUDIO, IMAGE, TEXT, MediaSlot, ModelInputs
from engine.tokenizer import ChatTokenizer
from engine.turns import Needs, PreparedTurn, prepare_turns
from engine.types import Conversation, InputError


class ContextTooLong(InputError):
    """Even the last turn alone does not fit in the model's context window."""


@dataclass
class Prompt:
    """One tokenized sequence with its media, on the CPU."""

    ids: list[int] = field(default_factory=list)
    media_kind: list[int] = field(default_factory=list)  # TEXT | IMAGE | AUDIO per token
    target_mask: list[bool] = field(default_factory=list)  # True on assistant tokens (training)
    images: list[torch.Tensor] = field(default_factory=list)  # each (3, S, S)
    audio: list[torch.Tensor] = field(default_factory=list)  # each (n_mels, F)
    slots: list[tuple[int, tuple[int, int], list[int], list[int]]] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)  # what the tools reported about the last turn
    dropped_turns: int = 0

    def extend(self, other: Prompt) -> None:
        offset, n_images, n_audio = len(self.ids), len(self.images), len(self.audio)
        self.ids += other.ids
        self.media_kind += other.media_kind
        self.target_mask += other.target_mask
        self.images += other.images
        self.audio += other.audio
        for position, (start, end), images, audio in other.slots:
            self.slots.append(
                (
                    position + offset,
                    (start + offset, end + offset),
                    [i + n_images for i in images],
                    [a + n_audio for a in audio],
                )
            )

    def __len__(self) -> int:
        return len(self.ids)


def _tokens(prompt: Prompt, ids: list[int], kind: int = TEXT, target: bool = False) -> None:
    prompt.ids += ids
    prompt.media_kind += [kind] * len(ids)
    prompt.target_mask += [target] * len(ids)


def encode_turn(turn: PreparedTurn, tokenizer: ChatTokenizer, config: ModelConfig) -> Prompt:
    """One prepared turn as its own small Prompt (its media were decoded by `engine.turns`)."""
    part = Prompt()
    is_reply = turn.role == "assistant"
    _tokens(part, [tokenizer.role_id(turn.role)])
    part.images = [image.tensor for image in turn.images]
    part.audio = [clip.mel for clip in turn.audio]
    if any(x is None for x in part.images + part.audio):
        raise ValueError("The turn was prepared without the built-in model's media: use Needs.for_builtin(config).")
    part.observations = list(turn.observations)
    text = tokenizer.encode(turn.text_with_notes())
    slot_position = None if config.media_after_text else _media_tokens(part, tokenizer, config)
    text_start = len(part.ids)
    _tokens(part, text, target=is_reply)
    text_span = (text_start, len(part.ids))
    if config.media_after_text:
        slot_position = _media_tokens(part, tokenizer, config)
    if slot_position is not None:
        part.slots.append((slot_position, text_span, list(range(len(part.images))), list(range(len(part.audio)))))
    _tokens(part, [tokenizer.end_id], target=is_reply)
    return part


def _media_tokens(part: Prompt, tokenizer: ChatTokenizer, config: ModelConfig) -> int | None:
    """Append the placeholders of `part`'s media; the <|media|> slot's index in sum/gated fusion."""
    if config.fusion == "concat":
        for _ in part.images:
            _tokens(part, [tokenizer.image_id] * config.image_tokens, IMAGE)
        for mel in part.audio:
            _tokens(part, [tokenizer.audio_id] * config.audio_tokens(mel.shape[-1]), AUDIO)
    elif part.images or part.audio:
        _tokens(part, [tokenizer.media_id])
        return len(part.ids) - 1
    return None


def build_prompt(
    conversation: Conversation,
    tokenizer: ChatTokenizer,
    config: ModelConfig,
    max_tokens: int | None = None,
    add_generation_prompt: bool = True,
) -> Prompt:
    """Prepare the conversation's turns (`engine.turns`, cached by content), then `prompt_from_turns`."""
    turns = prepare_turns([t for t in conversation.turns if t.role != "system"], Needs.for_builtin(config))
    return prompt_from_turns(conversation.system_prompt, turns, tokenizer, config, max_tokens, add_generation_prompt)


def prompt_from_turns(
    system_prompt: str,
    turns: Sequence[PreparedTurn],
    tokenizer: ChatTokenizer,
    config: ModelConfig,
    max_tokens: int | None = None,
    add_generation_prompt: bool = True,
) -> Prompt:
    """Tokenize prepared turns, dropping the oldest (never the system prompt) to fit `max_tokens`; no I/O."""
    max_tokens = min(max_tokens or config.max_seq_len, config.max_seq_len)
    head = Prompt()
    _tokens(head, [tokenizer.bos_id])
    if system_prompt:
        head.extend(encode_turn(PreparedTurn("system", system_prompt), tokenizer, config))
    turns = [turn for turn in turns if turn.role != "system"]
    parts = [encode_turn(turn, tokenizer, config) for turn in turns]
    tail = Prompt()
    if add_generation_prompt:
        _tokens(tail, [tokenizer.special["<|assistant|>"]])

    first = 0
    while first < len(parts) and len(head) + sum(map(len, parts[first:])) + len(tail) > max_tokens:
        first += 1
    while first < len(parts) and turns[first].role == "assistant":  # start on a user turn
        first += 1
    if parts and first == len(parts):
        needed = len(head) + len(parts[-1]) + len(tail)
        raise ContextTooLong(
            f"The message is too long for this model: it needs {needed} tokens and the model "
            f"reads at most {max_tokens} here. Please shorten it or attach fewer files."
        )
    prompt = head
    for part in parts[first:]:
        prompt.extend(part)
    prompt.extend(tail)
    prompt.observations = parts[-1].observations if parts else []
    prompt.dropped_turns = first
    return prompt


def collate(
    prompts: list[Prompt], device: torch.device | str = "cpu", pad_id: int = 0, dtype: torch.dtype = torch.float32
) -> ModelInputs:
    """Right-pad prompts into one batch of tensors on `device`."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    kinds = torch.zeros((len(prompts), width), dtype=torch.long)
    images, audio, slots = [], [], []
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = torch.tensor(prompt.ids)
        kinds[row, : len(prompt)] = torch.tensor(prompt.media_kind)
        for position, span, image_idx, audio_idx in prompt.slots:
            slots.append(
                MediaSlot(
                    row, position, span, [i + len(images) for i in image_idx], [a + len(audio) for a in audio_idx]
                )
            )
        images += prompt.images
        audio += prompt.audio
    positions = torch.arange(width).expand(len(prompts), width)  # (T,) -> (B, T); padding continues
    return ModelInputs(
        ids=ids.to(device),
        positions=positions.to(device),
        lengths=torch.tensor([len(p) for p in prompts], device=device),
        media_kind=kinds.to(device),
        images=torch.stack(images).to(device, dtype) if images else None,
        audio=[mel.to(device, dtype) for mel in audio],
        slots=slots,
    )
