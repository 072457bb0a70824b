"""Benchmark the engine against Hugging Face `generate`: `python -m lab.bench [--json]`.

    python -m lab.bench                                 # preset "small", auto device
    python -m lab.bench --preset base --device cuda --new-tokens 128
    python -m lab.bench --model assets/models/builtin --json --plot bench.png
    python -m lab.bench --model smollm2               # the real SmolLM2-135M-Instruct against transformers
    python -m lab.bench --model smollm2 --decode int8 # the engine's fast decode step (engine.quantize)

With --model smollm2 (or a .gguf) and `llama_cpp` importable (`pip install llama-cpp-python`,
a ~10 min source build on 2 cores), llama.cpp runs the same GGUF at batch 1 too, on every core,
with its own quantized weights, the same prompt ids, greedy (its prompt cache reset each run).

Measures, in one run on one machine, with random weights (the checkpoint's for the engine with
--model) and a random text-only prompt of --prompt-tokens ids, greedy, exactly --new-tokens
new tokens (no stop ids):

- TTFT and decode tokens/s at batch 1 for the engine (`engine.generation.generate`) and for
  `transformers` `LlamaForCausalLM.generate` of the same width, depth, heads, SwiGLU width and
  vocabulary (tied embeddings, SDPA attention, KV cache, the same dtype); with `--model smollm2`
  or a Llama `.gguf` file, both run that model's real weights (transformers loads the GGUF);
- aggregate tokens/s of the engine at 1, 4 and 8 concurrent sequences (one batch each).

TTFT is the time from the call to the first new token (prefill included). Decode tokens/s is
(N - 1) / (time from the first new token to the last). HF times come from a streamer whose
put() records the time of each new token (generate's first put() is the prompt; skipped).
Aggregate tokens/s is B * N / wall time of the whole call (prefill included). Each number is
the median of --repeats runs after --warmup runs; on CUDA the clock is read after a sync.

A table goes to stdout, progress to stderr; with --json the last stdout line is one JSON
object: ttft_ms, decode_tok_s, hf_ttft_ms, hf_decode_tok_s, batch_tok_s {"1","4","8"},
speedup_decode, ttft_ratio, params, machine, config.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from tqdm import tqdm

from engine.config import PRESETS, ModelConfig, preset
from engine.decoder import FeedForward
from engine.fusion import ModelInputs
from engine.generation import generate
from engine.loading import default_dtype, load_checkpoint, resolve_device
from engine.model import MultimodalModel
from engine.types import EngineError, GenerationConfig

BATCH_SIZES = (1, 4, 8)


def clock(device: torch.device) -> float:
    """perf_counter, after the GPU's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def ffn_hidden(config: ModelConfig) -> int:
    """The SwiGLU hidden width of the engine's Transformer MLP (read from the module itself)."""
    return FeedForward(config).down.in_features


def build_hf_model(config: ModelConfig, device: torch.device, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM  # slow to import: only when measuring

    hf_config = LlamaConfig(
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        intermediate_size=ffn_hidden(config),
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_seq_len,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
    )
    return LlamaForCausalLM(hf_config).to(device=device, dtype=dtype).eval()


def load_pretrained_pair(spec: str, device: torch.device, dtype: torch.dtype):
    """(the engine's model, transformers' LlamaForCausalLM) with the same real weights from a GGUF."""
    from transformers import AutoModelForCausalLM

    from engine.llm import load_language_model, load_smollm2

    path = gguf_path(spec)
    lm = load_smollm2(device, dtype=dtype) if spec == "smollm2" else load_language_model(path, device, dtype=dtype)
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype, attn_implementation="sdpa")
    return lm.model.eval(), hf.to(device).eval()


def gguf_path(spec: str) -> Path:
    from engine.llm.lm import locate_smollm2

    return locate_smollm2() if spec == "smollm2" else Path(spec)


def weights(module: torch.nn.Module) -> int:
    """Parameters, packed weights (engine.quantize keeps them as buffers: int8, or two 4-bit codes a byte) included."""
    int8 = sum(b.numel() for name, b in module.named_buffers() if name.endswith("int8_weight"))
    int4 = sum(2 * b.numel() for name, b in module.named_buffers() if name.endswith(".packed"))
    return sum(p.numel() for p in module.parameters()) + int8 + int4


def text_parameters(model: MultimodalModel) -> int:
    """Parameters on the text path (embeddings, decoder, final norm): what the Llama model has."""
    return sum(weights(m) for m in (model.text_encoder, model.decoder, model.norm))


def engine_inputs(ids: torch.Tensor) -> ModelInputs:
    B, T = ids.shape
    return ModelInputs(
        ids=ids,
        positions=torch.arange(T, device=ids.device).expand(B, T),
        lengths=torch.full((B,), T, device=ids.device),
        media_kind=torch.zeros_like(ids),
    )


def time_engine(model: MultimodalModel, ids: torch.Tensor, new_tokens: int) -> list[float]:
    """Clock readings: [call, token 1, ..., token N]."""
    device = ids.device
    config = GenerationConfig(max_new_tokens=new_tokens, temperature=0.0)
    with torch.inference_mode():
        times = [clock(device)]
        for _ in generate(model, engine_inputs(ids), config, stop_ids=set()):
            times.append(clock(device))
    assert len(times) == new_tokens + 1, f"the engine stopped after {len(times) - 1} tokens"
    return times


def time_hf(model, ids: torch.Tensor, new_tokens: int) -> list[float]:
    """Clock readings: [call, token 1, ..., token N]."""
    from transformers.generation.streamers import BaseStreamer

    class TokenClock(BaseStreamer):
        """Records the clock at every new token; generate's first put() is the prompt and is skipped."""

        def __init__(self):
            self.times, self.prompt_seen = [], False

        def put(self, value):
            if self.prompt_seen:
                self.times.append(clock(ids.device))
            self.prompt_seen = True

        def end(self):
            pass

    streamer = TokenClock()
    with torch.inference_mode():
        started = clock(ids.device)
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            streamer=streamer,
        )
    assert len(streamer.times) == new_tokens, f"HF generated {len(streamer.times)} tokens"
    return [started, *streamer.times]


def llama_cpp_runner(gguf: Path, context: int):
    """time_llama_cpp bound to one llama.cpp model of `gguf`, or None when llama_cpp is not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=context, n_batch=512, n_threads=os.cpu_count(), verbose=False)
    return lambda ids, new_tokens: time_llama_cpp(llm, ids, new_tokens)


def time_llama_cpp(llm, ids: torch.Tensor, new_tokens: int) -> list[float]:
    """Clock readings: [call, token 1, ..., token N] for llama.cpp's greedy generate of the same ids."""
    llm.reset()  # no prompt reuse from the previous run: it prefills the whole prompt, as the others do
    times = [time.perf_counter()]
    for _ in llm.generate(ids[0].tolist(), top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        times.append(time.perf_counter())
        if len(times) == new_tokens + 1:
            break
    return times


def ttft_and_rate(times: list[float]) -> tuple[float, float]:
    """(TTFT in ms, decode tokens/s) from [call, token 1, ..., token N]."""
    return 1000 * (times[1] - times[0]), (len(times) - 2) / (times[-1] - times[1])


def measure(run, warmup: int, repeats: int, progress: tqdm) -> list:
    """Results of `repeats` timed calls of run() after `warmup` untimed ones."""
    results = []
    for _ in range(warmup + repeats):
        results.append(run())
        progress.update()
    return results[warmup:]


def machine_info(device: torch.device, dtype: torch.dtype) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dtype": str(dtype).replace("torch.", ""),
        "python": platform.python_version(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    names, colours = ["engine", "HF transformers"], ["tab:blue", "tab:orange"]
    ttft, rate = [result["ttft_ms"], result["hf_ttft_ms"]], [result["decode_tok_s"], result["hf_decode_tok_s"]]
    if "llama_cpp_decode_tok_s" in result:
        names, colours = [*names, "llama.cpp"], [*colours, "tab:green"]
        ttft, rate = [*ttft, result["llama_cpp_ttft_ms"]], [*rate, result["llama_cpp_decode_tok_s"]]
    pairs = [
        ("time to first token (ms, lower is better)", ttft),
        ("batch-1 decode tokens/s (higher is better)", rate),
    ]
    for axis, (title, values) in zip(axes, pairs):
        axis.bar(names, values, color=colours)
        axis.set_title(title, fontsize=9)
    axes[2].bar(list(result["batch_tok_s"]), list(result["batch_tok_s"].values()), color="tab:blue")
    axes[2].set_title("engine aggregate tokens/s by batch size", fontsize=9)
    machine = result["machine"]
    fig.suptitle(
        f"{machine['gpu'] or machine['cpu']} · {machine['device']} {machine['dtype']} · torch {machine['torch']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def decode_step(model: MultimodalModel) -> str:
    """Which one-token step the engine decodes with here: "C++" (engine.native_step), "Python", or "generic"."""
    from engine.native_step import enabled, load

    if model.config.decoder != "transformer" or model.norm.weight.device.type != "cpu":
        return "generic"
    return "C++" if enabled() and load() else "Python"


def report(result: dict) -> str:
    m, c, p = result["machine"], result["config"], result["params"]
    lines = [
        f"machine  {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads, load average "
        f"{m['load_average']})" + (f", GPU {m['gpu']}" if m["gpu"] else ""),
        f"software torch {m['torch']}, transformers {m['transformers']}, python {m['python']}",
        f"run      device {m['device']}, dtype {m['dtype']} (engine weights: {c['decode']}, step: {c['step']}), "
        f"{c['prompt_tokens']} prompt tokens, "
        f"{c['new_tokens']} new tokens, greedy, median of {c['repeats']} (+{c['warmup']} warm-up)",
        f"model    {c['source']}: {c['decoder']} d_model={c['d_model']} layers={c['n_layers']} "
        f"heads={c['n_heads']} ffn={c['ffn_hidden']} vocab={c['vocab_size']}",
        f"params   engine {p['engine']:,} ({p['engine_text']:,} on the text path), HF Llama {p['hf']:,}",
        "",
        f"{'batch 1':<26}{'engine':>12}{'HF':>12}{'engine/HF':>12}",
        f"{'time to first token (ms)':<26}{result['ttft_ms']:>12.1f}{result['hf_ttft_ms']:>12.1f}"
        f"{result['ttft_ratio']:>11.2f}x",
        f"{'decode tokens/s':<26}{result['decode_tok_s']:>12.1f}{result['hf_decode_tok_s']:>12.1f}"
        f"{result['speedup_decode']:>11.2f}x",
    ]
    if "llama_cpp_decode_tok_s" in result:
        lines += [
            "",
            f"{'batch 1, llama.cpp':<26}{'engine':>12}{'llama.cpp':>12}{'engine/cpp':>12}",
            f"{'time to first token (ms)':<26}{result['ttft_ms']:>12.1f}{result['llama_cpp_ttft_ms']:>12.1f}"
            f"{result['ttft_ms'] / result['llama_cpp_ttft_ms']:>11.2f}x",
            f"{'decode tokens/s':<26}{result['decode_tok_s']:>12.1f}{result['llama_cpp_decode_tok_s']:>12.1f}"
            f"{result['decode_vs_llama_cpp']:>11.2f}x",
            "(llama.cpp runs the GGUF's own quantized weights, on all cores)",
        ]
    lines += [
        "",
        f"{'concurrent sequences':<26}" + "".join(f"{b:>10}" for b in result["batch_tok_s"]),
        f"{'engine aggregate tok/s':<26}" + "".join(f"{v:>10.1f}" for v in result["batch_tok_s"].values()),
    ]
    return "\n".join(lines)


def run_benchmark(model: MultimodalModel, hf_model, args: argparse.Namespace, llama_cpp=None) -> dict:
    """The timed part: batch 1 engine vs HF (and llama.cpp), then the engine at every batch size; medians."""
    device, N = model.norm.weight.device, args.new_tokens
    generator = torch.Generator().manual_seed(args.seed)
    sizes = args.batch_sizes
    prompts = torch.randint(1, model.config.vocab_size, (max(sizes), args.prompt_tokens), generator=generator)
    prompts = prompts.to(device)  # (B, T); batch 1 uses the first row
    runs = (args.warmup + args.repeats) * (2 + len(sizes) + (llama_cpp is not None))
    with tqdm(total=runs, desc="bench", file=sys.stderr, leave=False) as progress:
        ours = measure(lambda: ttft_and_rate(time_engine(model, prompts[:1], N)), args.warmup, args.repeats, progress)
        theirs = measure(lambda: ttft_and_rate(time_hf(hf_model, prompts[:1], N)), args.warmup, args.repeats, progress)
        cpp = []
        if llama_cpp is not None:
            cpp = measure(lambda: ttft_and_rate(llama_cpp(prompts[:1].cpu(), N)), args.warmup, args.repeats, progress)
        batch_tok_s = {}
        for B in sizes:
            runs = measure(lambda B=B: time_engine(model, prompts[:B], N), args.warmup, args.repeats, progress)
            batch_tok_s[str(B)] = B * N / statistics.median(t[-1] - t[0] for t in runs)  # whole call
    median = statistics.median
    result = {
        "ttft_ms": median(t for t, _ in ours),
        "decode_tok_s": median(r for _, r in ours),
        "hf_ttft_ms": median(t for t, _ in theirs),
        "hf_decode_tok_s": median(r for _, r in theirs),
        "batch_tok_s": batch_tok_s,
    }
    result["speedup_decode"] = result["decode_tok_s"] / result["hf_decode_tok_s"]
    result["ttft_ratio"] = result["ttft_ms"] / result["hf_ttft_ms"]
    if cpp:
        result["llama_cpp_ttft_ms"] = median(t for t, _ in cpp)
        result["llama_cpp_decode_tok_s"] = median(r for _, r in cpp)
        result["decode_vs_llama_cpp"] = result["decode_tok_s"] / result["llama_cpp_decode_tok_s"]
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small", choices=list(PRESETS), help="model size (default small)")
    parser.add_argument("--model", metavar="DIR", help="benchmark a saved checkpoint instead of a preset")
    parser.add_argument("--decoder", choices=["transformer", "lstm"], help="override the preset's decoder")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each measurement")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: leave as is)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--decode",
        default="native",
        choices=["native", "int8", "int4"],
        help="the engine's weights: as loaded (default), int8, or int4 (a GGUF's 4-bit layers as they are, "
        "the rest int8: what the app uses on a CPU), both with bfloat16 activations; transformers always "
        "runs the loaded dtype",
    )
    parser.add_argument(
        "--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="sequences decoded together (default 1,4,8)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart comparing engine and HF")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",")})
    except ValueError:
        parser.error("--batch-sizes takes numbers separated by commas, e.g. 1,4,8")
    if args.batch_sizes[0] < 1:
        parser.error("--batch-sizes must be at least 1")
    if args.model and args.decoder:
        parser.error("--decoder applies to presets; a checkpoint's decoder is fixed by its config.json")
    if args.prompt_tokens < 1 or args.new_tokens < 2 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --prompt-tokens >= 1, --new-tokens >= 2, --repeats >= 1, --warmup >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        dtype = default_dtype(device)
        torch.manual_seed(args.seed)
        hf_model, llama_cpp = None, None
        if args.model and (args.model == "smollm2" or args.model.endswith(".gguf")):
            model, hf_model = load_pretrained_pair(args.model, device, dtype)
            llama_cpp = llama_cpp_runner(gguf_path(args.model), args.prompt_tokens + args.new_tokens + 16)
            if llama_cpp is None:
                print("llama.cpp: not measured (pip install llama-cpp-python, see the README)", file=sys.stderr)
        elif args.model:
            model, _ = load_checkpoint(args.model, device=device, dtype=dtype)
        else:
            overrides = {"decoder": args.decoder} if args.decoder else {}
            model = MultimodalModel(preset(args.preset, **overrides)).to(device=device, dtype=dtype).eval()
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.decode != "native":
        from engine.quantize import packed_kinds, quantize

        model = quantize(model, args.decode)
        print(f"engine linears: {packed_kinds(model)}", file=sys.stderr)
    config = model.config
    if args.prompt_tokens + args.new_tokens > config.max_seq_len:
        print(f"error: --prompt-tokens + --new-tokens must fit in max_seq_len={config.max_seq_len}", file=sys.stderr)
        return 2
    hf_model = hf_model if hf_model is not None else build_hf_model(config, device, dtype)
    machine = machine_info(device, dtype)  # before the run: the load average is other programs'
    if machine["load_average"] > 0.5 * machine["cores"]:
        print(
            f"warning: the machine is busy (load average {machine['load_average']} on {machine['cores']} "
            "cores); timings will be noisy",
            file=sys.stderr,
        )
    result = run_benchmark(model, hf_model, args, llama_cpp)
    result["params"] = {
        "engine": weights(model),
        "engine_text": text_parameters(model),
        "hf": sum(p.numel() for p in hf_model.parameters()),
    }
    result["machine"] = machine
    sizes = ("decoder", "d_model", "n_layers", "n_heads", "vocab_size", "max_seq_len")
    result["config"] = {
        "source": args.model or f"preset {args.preset}",
        **{k: getattr(config, k) for k in sizes},
        "ffn_hidden": ffn_hidden(config),
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "seed": args.seed,
        "decode": args.decode,
        "step": decode_step(model),
    }
    print(report(result))
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
