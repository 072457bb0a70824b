"""The error a backend raises when the model runtime or server fails, not the input.

    BackendError("The model server at http://gpu:8000/v1 is not reachable ...")

Like every `EngineError`, `str(error)` is written for people: what happened and what to
try (a smaller model, `--device cpu`, fewer max tokens, checking that the server runs).
Bad input stays an `InputError`; a bad model folder or id stays a `CheckpointError`.
"""

from __future__ import annotations

from engine.types import EngineError


class BackendError(EngineError):
    """The model runtime or a remote server failed: out of memory, down, too slow, refused."""


OOM_ADVICE = (
    "Try a smaller model, `--device cpu`, fewer max new tokens, a shorter conversation, or fewer/smaller images."
)
