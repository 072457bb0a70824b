"""TrainConfig: every setting of a training run (`python -m lab.train`), saved as train_config.json
in the run's --out folder."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.types import InputError


@dataclass
class TrainConfig:
    data: str = "data/builtin"
    out: str = "runs/builtin"
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)  # e.g. {"decoder": "lstm", "fusion": "sum"}
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay down to lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_examples: int = 256
    checkpoint_every: int = 250
    max_minutes: float = 0.0  # stop (and save) after this long; 0 = no limit
    scene_probe: bool = True  # train the image encoder with the auxiliary scene probe too
    init_from: str = ""  # fine-tune: start from this run folder's model (and its probe), not from scratch
    source_weights: dict = field(default_factory=dict)  # e.g. {"scene": 0.25}: drawn a quarter as often
    scene_questions: int = 1  # >1: each scene picked is asked 1..N fresh questions (lab.data.quiz)
    # weight of the grounding loss (lab.grounding): one head looks at the shape a quiz answer is
    # about; needs scene_questions > 1 (the quizzes know the cells); 0 = off
    grounding: float = 0.0
    grounding_layer: int = -2  # which decoder layer's head (negative: from the top)
    grounding_head: int = 0
    grounding_detach_keys: bool = False  # the grounding loss moves the queries only (lab.grounding)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        weights = self.source_weights
        if not isinstance(weights, dict) or not all(isinstance(w, (int, float)) and w >= 0 for w in weights.values()):
            raise InputError(f"source_weights must map sources to numbers >= 0, not {self.source_weights}")
        if not isinstance(self.scene_questions, int) or self.scene_questions < 1:
            raise InputError(f"scene_questions must be at least 1, not {self.scene_questions}")
        if self.grounding < 0 or (self.grounding and self.scene_questions < 2):
            raise InputError(
                f"grounding must be >= 0 and needs scene_questions of 2 or more "
                f"(got grounding {self.grounding}, scene_questions {self.scene_questions})"
            )
