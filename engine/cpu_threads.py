"""OpenMP threads on a CPU: the decoding thread gets the cores, every other thread one.

    reserve_cores_for_decoding(device)  # at start-up, before any torch work (serve, ask, voice do)
    use_cpu_threads(n)              # first thing in the thread that decodes (engine.scheduler)

Why (measured on 2 cores, SmolLM2-135M int8, `python -m lab.bench_serve`): libgomp spins
a worker between parallel regions only while it manages no more threads than there are CPUs.
Once a second thread has run a two-thread region (the main thread loading the model, then the
scheduler's thread decoding), every worker sleeps between regions and each of a decode step's
hundreds of regions pays a wake-up: 40 tokens/s in one thread became 22 in the scheduler's.
With the other threads at one thread (they never make a team) the scheduler's thread decodes
at the main thread's speed. torch's `set_num_threads` sets the default for threads not yet
started as well, so the decoding thread sets its own count through libgomp directly.
"""

from __future__ import annotations

import ctypes
import functools

import torch


@functools.cache
def _libgomp() -> ctypes.CDLL | None:
    """torch's own libgomp (already loaded: the same library handle), or None (another OpenMP, or none)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and line.rstrip().endswith(".so.1")}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


_reserved: int | None = None  # what the decoding threads take, once keep_other_threads_single ran


def keep_other_threads_single() -> int:
    """From now on torch uses one thread in every thread that does not call use_cpu_threads;
    returns the count the decoding threads take (torch's count before the first call)."""
    global _reserved
    if _reserved is None:
        _reserved = torch.get_num_threads()
        torch.set_num_threads(1)
    return _reserved


def reserve_cores_for_decoding(device: str = "auto") -> None:
    """What the app's commands call before loading a model: keep_other_threads_single() when
    `device` is a CPU (a device that cannot be used is left for the loader to report)."""
    from engine.loading import resolve_device
    from engine.types import EngineError

    try:
        cpu = resolve_device(device).type == "cpu"
    except EngineError:
        return
    if cpu:
        keep_other_threads_single()


def decoding_threads() -> int | None:
    """The count reserved for decoding threads; None if keep_other_threads_single was not called."""
    return _reserved


def use_cpu_threads(threads: int) -> bool:
    """This thread's torch ops run on `threads` OpenMP threads (other threads keep theirs);
    False when torch's OpenMP is not libgomp (nothing changed)."""
    torch.get_num_threads()  # torch sets this thread's OpenMP count on first use: before ours
    gomp = _libgomp()
    if gomp is None:
        return False
    gomp.omp_set_num_threads(ctypes.c_int(threads))
    return torch.get_num_threads() == threads
