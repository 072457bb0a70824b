"""What training learns from: the dataset's conversations encoded once, and the batch each step
draws from them (seeded by the step, so a resumed run draws what it would have drawn)."""

from __future__ import annotations

import itertools
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from engine.config import ModelConfig
from engine.prompt import ContextTooLong, Prompt, build_prompt
from engine.tokenizer import ChatTokenizer
from engine.types import InputError
from lab.data.quiz import draw_quiz, is_quizzable
from lab.grounding import grounding_queries
from lab.observe_cache import load_observations
from lab.scene_probe import scene_target
from lab.train_config import TrainConfig


def encode_examples(
    examples, tokenizer: ChatTokenizer, config: ModelConfig, desc: str, observation_cache: Path | None = None
) -> list[Prompt]:
    """Tokenize and preprocess every conversation once; over-long ones are left out (and counted).

    The tools' observations of every medium are read from `observation_cache` (a JSON file,
    see lab.observe_cache) or computed once and written there.
    """
    return [prompt for _, prompt in encode_pairs(examples, tokenizer, config, desc, observation_cache)]


def encode_pairs(
    examples, tokenizer: ChatTokenizer, config: ModelConfig, desc: str, observation_cache: Path | None = None
) -> list[tuple[object, Prompt]]:
    """Like `encode_examples`, keeping each prompt's example: [(example, prompt)]."""
    load_observations(examples, config.observations, observation_cache)
    pairs, too_long = [], 0
    for example in tqdm(examples, desc=desc, file=sys.stderr, leave=False):
        try:
            prompt = build_prompt(example.conversation, tokenizer, config, add_generation_prompt=False)
        except ContextTooLong:
            too_long += 1
            continue
        except InputError as error:
            raise InputError(f"Example {getattr(example, 'id', '?')} cannot be used: {error}") from error
        if prompt.dropped_turns:
            too_long += 1
            continue
        pairs.append((example, prompt))
    if too_long:
        print(f"{desc}: left out {too_long} conversations longer than {config.max_seq_len} tokens", file=sys.stderr)
    if not pairs:
        raise InputError(f"{desc}: no usable examples.")
    return pairs


def draw_weights(cfg: TrainConfig, sources: list[str]) -> list[float] | None:
    """Cumulative draw weights of examples from these sources (cfg.source_weights), or None: all equal."""
    return (
        list(itertools.accumulate(cfg.source_weights.get(source, 1.0) for source in sources))
        if cfg.source_weights
        else None
    )


def draw_batch(
    cfg: TrainConfig, step: int, count: int, cum_weights: list[float] | None
) -> tuple[random.Random, list[int]]:
    """The indices (among `count` examples) of step `step`'s batch, and the generator that goes on to quiz
    its scenes: both depend on (seed, step) only, so a resumed run draws what it would have drawn."""
    order = random.Random(cfg.seed * 1_000_003 + step)
    chosen = (
        order.sample(range(count), min(cfg.batch_size, count))
        if cum_weights is None
        else order.choices(range(count), cum_weights=cum_weights, k=cfg.batch_size)
    )
    return order, chosen


@dataclass
class TrainSet:
    """The training conversations, encoded, and what each step's batch is drawn from."""

    cfg: TrainConfig
    tokenizer: ChatTokenizer
    config: ModelConfig
    prompts: list[Prompt]
    scene_targets: list  # per prompt: what the scene probe should read (lab.scene_probe), None if no scene
    quizzable: list  # per prompt: its example when each draw asks fresh questions of its scene, else None
    cum_weights: list[float] | None  # draw_weights

    @classmethod
    def encode(
        cls,
        cfg: TrainConfig,
        examples,
        tokenizer: ChatTokenizer,
        config: ModelConfig,
        observation_cache: Path | None = None,
    ) -> TrainSet:
        pairs = encode_pairs(examples, tokenizer, config, "encoding train", observation_cache)
        scene_targets = [scene_target(example.meta.get("scene")) for example, _ in pairs]
        cum_weights = draw_weights(cfg, [example.source for example, _ in pairs])
        if cum_weights is not None and not cum_weights[-1]:
            raise InputError(f"source_weights {cfg.source_weights} leave nothing of {cfg.data} to train on.")
        quizzable = [example if cfg.scene_questions > 1 and is_quizzable(example) else None for example, _ in pairs]
        return cls(cfg, tokenizer, config, [prompt for _, prompt in pairs], scene_targets, quizzable, cum_weights)

    def batch(self, step: int, grounded: bool) -> tuple[list[Prompt], list, list[list]]:
        """Step `step`'s prompts (scenes quizzed afresh), their scene targets, and each prompt's
        grounding queries (lab.grounding; [] unless `grounded` and a quiz)."""
        order, chosen = draw_batch(self.cfg, step, len(self.prompts), self.cum_weights)
        batch, queries = [], []
        for i in chosen:
            if self.quizzable[i] is None:
                batch.append(self.prompts[i])
                queries.append([])
                continue
            drawn = draw_quiz(self.quizzable[i], order, self.cfg.scene_questions)
            batch.append(build_prompt(drawn.conversation, self.tokenizer, self.config, add_generation_prompt=False))
            queries.append(
                grounding_queries(batch[-1], drawn.answer_cells, self.config.image_tokens) if grounded else []
            )
        return batch, [self.scene_targets[i] for i in chosen], queries
