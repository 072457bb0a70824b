"""The CPU decode step in C++ (`engine/csrc/one_token_step.cpp`), built on first use.

    hidden = native_one_token_step(decoder, x, positions, cache)   # (B, 1, C), or None: use one_token_step

`engine.one_token.one_token_step` already does a step with few tensor operations, yet on two
cores PyTorch's cost per operation from Python (~5 µs, ~25 operations a layer) was still about
half of SmolLM2's step. The C++ step is the same computation: the 4-bit and dense matmuls are
PyTorch's own kernels, called from C++; the int8 ones (SmolLM2's output head among them) are
`engine/csrc/low_bit_matmul.cpp`'s where the CPU has AVX2 (`fast_kernels`: the head in ~1.06 ms
on one core against 1.6-2.0 ms for PyTorch's kernel on two); the norms, rotation, cache write and
attention over one query are plain loops in float32.

The library's own loops (attention, the int8 rows) run on the calling thread. Compiled with
OpenMP (`-fopenmp`, so that `at::parallel_for` would split them over the cores), the server
decoded 20-35% slower (`lab.bench_serve`, A/B on 1, 8 and 16 streams: 72-74 against 92-96
tokens/s for one stream, 164-167 against 217-229 for 16), so it is not.

It is compiled once per machine by `torch.utils.cpp_extension` (a C++ compiler is needed; the
build lands in `~/.cache/torch_extensions` and took 15-20 s on 2 cores here). Where it cannot be built,
or with `ENGINE_NATIVE_STEP=0`, decoding falls back to the Python step with a warning, no
slower than before. `scripts/install.sh` builds it, so the first reply does not wait for it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from pathlib import Path

import torch
from torch import nn

SOURCES = [Path(__file__).parent / "csrc" / name for name in ("one_token_step.cpp", "low_bit_matmul.cpp")]
NAME = "engine_native_step"  # the library's name in the build folder
DENSE, INT8, INT4 = 0, 1, 2  # the C++ Kind

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, object] = {}  # "loaded": bool, "reason": why not
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # decoder -> (its linears, plan)


def enabled() -> bool:
    """False when `ENGINE_NATIVE_STEP=0` turns the C++ step off."""
    return os.environ.get("ENGINE_NATIVE_STEP", "1") != "0"


def load() -> bool:
    """Build (once per machine) and load the C++ step; False, with the reason logged once, where it cannot."""
    if "loaded" in _state:
        return bool(_state["loaded"])
    with _lock:
        if "loaded" not in _state:
            try:
                from torch.utils.cpp_extension import load as build

                build(
                    name=NAME,
                    sources=[str(path) for path in SOURCES],
                    extra_cflags=["-O3"],
                    is_python_module=False,
                    verbose=False,
                )
                _state["loaded"] = True
            except Exception as error:  # no compiler, no headers: the Python step still works
                _state["loaded"], _state["reason"] = False, f"{type(error).__name__}: {error}"
                _log.warning("the C++ decode step could not be built; decoding runs the Python step (%s)", error)
    return bool(_state["loaded"])


def fast_kernels() -> bool:
    """True where the C++ code is built and the CPU has AVX2 and FMA: then int8 weights (`engine.quantize`,
    the output head among them) are multiplied by `torch.ops.engine_native.int8_rows` (`low_bit_matmul.cpp`)."""
    if not enabled() or not load():
        return False
    if "fast" not in _state:
        _state["fast"] = bool(torch.ops.engine_native.fast_kernels())
    return bool(_state["fast"])


def prepare(model: nn.Module) -> None:
    """Build and load the C++ step now when `model`, a Transformer on a CPU, will decode with it,
    so that the first reply does not wait for the build (backends call this when they load)."""
    decoder = getattr(model, "decoder", None)
    if decoder is not None and hasattr(decoder, "blocks") and model.norm.weight.device.type == "cpu" and enabled():
        load()


def unavailable_reason() -> str | None:
    """Why the C++ step could not be loaded, or None (loaded, or not tried yet)."""
    return _state.get("reason")  # type: ignore[return-value]


def _linears(decoder: nn.Module) -> list[nn.Module]:
    return [
        module
        for block in decoder.blocks
        for module in (
            block.attention_norm,
            block.ffn_norm,
            block.attention.qkv,
            block.attention.out,
            block.ffn.gate_up,
            block.ffn.down,
        )
    ]


def _describe(linear: nn.Module) -> tuple[list, list[int]] | None:
    """(packed, scales, dense, bias) and (kind, max_rows) for the plan, or None for a module it cannot run."""
    from engine.quantize import Int4Linear, Int8Linear

    if isinstance(linear, Int4Linear):
        return [linear.packed, linear.scales_and_zeros, linear.dense, linear.bias], [INT4, linear.max_rows]
    if isinstance(linear, Int8Linear):
        return [linear.int8_weight, linear.scales, linear.dense, linear.bias], [INT8, linear.max_rows]
    if type(linear) is nn.Linear:
        return [None, None, linear.weight, linear.bias], [DENSE, 0]
    return None  # a LoRA adapter being trained, or anything else: the Python step runs it


def _plan(decoder: nn.Module):
    """The decoder's C++ plan, built again when one of its layers was replaced; None when it has a
    layer the C++ step does not run."""
    modules = _linears(decoder)
    known = _plans.get(decoder)
    if known is not None and len(known[0]) == len(modules) and all(a is b for a, b in zip(known[0], modules)):
        return known[1]
    tensors, kinds = [], []
    for start in range(0, len(modules), 6):
        attention_norm, ffn_norm, *linears = modules[start : start + 6]
        if type(attention_norm) is not nn.RMSNorm or type(ffn_norm) is not nn.RMSNorm:
            return None
        tensors += [attention_norm.weight, ffn_norm.weight]
        for linear in linears:
            described = _describe(linear)
            if described is None:
                return None
            tensors += described[0]
            kinds += described[1]
    config = decoder.config
    rotary = decoder.rotary
    plan = torch.classes.engine_native.OneTokenPlan(
        config.n_heads,
        config.kv_heads,
        config.head_dim,
        float(decoder.blocks[0].attention_norm.eps or torch.finfo(torch.float32).eps),
        rotary.cos.float(),  # (max_len, D/2): a float32 copy, as the tables may be bfloat16 (engine.quantize)
        rotary.sin.float(),
        tensors,
        kinds,
    )
    _plans[decoder] = (modules, plan)
    return plan


@torch.inference_mode()
def native_one_token_step(
    decoder: nn.Module, x: torch.Tensor, positions: torch.Tensor, cache: nn.Module
) -> torch.Tensor | None:
    """`one_token_step` in C++: x (B, 1, C) at `positions` (B, 1) -> (B, 1, C), writing each row's
    keys and values into `cache`; None when the C++ step is off, not built, or cannot run this decoder."""
    if not enabled() or not load():
        return None
    plan = _plan(decoder)
    if plan is None:
        return None
    keys = [layer.k for layer in cache.layers]
    values = [layer.v for layer in cache.layers]
    h = plan.step(x[:, 0], positions[:, 0], keys, values)  # (B, 1, C) -> (B, C) float32
    return h[:, None].to(x.dtype)  # (B, C) -> (B, 1, C)
