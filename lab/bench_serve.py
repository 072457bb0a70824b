"""Load-test the real server: `python -m lab.bench_serve` (127.0.0.1 only).

    python -m lab.bench_serve                                   # smollm2, 1/4/8/16/32 streams (~10 min, 2 cores)
    python -m lab.bench_serve --streams 1,4 --new-tokens 16 --turns 3 --json   # what the slow test runs
    python -m lab.bench_serve --plot docs/images/serve-bench.png

Starts `launch.py --model MODEL` in its own process on a free port (its own temporary data
folder), then talks to it only through `/v1/chat/completions` with the `openai` SDK, streaming,
as clients on other machines would:

- for each number of concurrent streams: that many clients at once, each with its own
  question, greedy, exactly --new-tokens at most; aggregate completion tokens/s (all tokens /
  wall time of the round), p50 and p95 time to the first content token, errors;
- --conversations conversations (3) of --turns turns, one after another (each turn sends the
  whole history back, as chat clients do): the median time to first token at turn 1 and at the last turn;
- the server's resident memory after start-up and a first reply (baseline), at the end of the
  load, and once the server has been idle for --idle-s seconds.

A table goes to stdout; --json prints one JSON object as the last line; --plot writes a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ("the sea", "a mountain", "bread", "the moon", "a library", "rain", "bicycles", "a garden", "trains",
          "winter", "coffee", "a river", "music", "the desert", "a city at night", "owls", "volcanoes", "tea",
          "a market", "bridges", "the forest", "snow", "lighthouses", "kites", "a farm", "clocks", "the wind",
          "islands", "paper", "honey", "stars", "a castle")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


class Server:
    """launch.py in a child process on 127.0.0.1."""

    def __init__(self, model: str, port: int, data_dir: str, extra: list[str]):
        command = [sys.executable, str(ROOT / "launch.py"), "--model", model, "--port", str(port)]
        command += ["--host", "127.0.0.1", "--data-dir", data_dir, *extra]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.log.append(line.rstrip())

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited:\n" + "\n".join(self.log[-20:]))
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n" + "\n".join(self.log[-20:]))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def one_stream(client, model: str, messages: list[dict], new_tokens: int) -> dict:
    """Time to first content token, completion tokens and the reply of one streamed request."""
    started = time.perf_counter()
    first, pieces, usage = None, [], None
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=new_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            first = first if first is not None else time.perf_counter() - started
            pieces.append(chunk.choices[0].delta.content)
    return {
        "ttft_s": first,
        "tokens": usage or len(pieces),
        "text": "".join(pieces),
        "total_s": time.perf_counter() - started,
    }


def load_round(url: str, model: str, streams: int, new_tokens: int) -> dict:
    from openai import OpenAI

    results: list[dict | None] = [None] * streams
    errors: list[str] = []

    def client_thread(i: int) -> None:
        client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
        question = f"Write a few sentences about {TOPICS[i % len(TOPICS)]}."
        try:
            results[i] = one_stream(client, model, [{"role": "user", "content": question}], new_tokens)
        except Exception as error:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    done = [r for r in results if r is not None and r["ttft_s"] is not None]
    ttfts = sorted(r["ttft_s"] for r in done)
    return {
        "streams": streams,
        "tokens": sum(r["tokens"] for r in done),
        "wall_s": wall,
        "tok_s": sum(r["tokens"] for r in done) / wall,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p95_s": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))] if ttfts else None,
        "errors": len(errors) + (streams - len(done) - len(errors)),
        "error_messages": errors[:3],
    }


def conversation_turns(url: str, model: str, turns: int, new_tokens: int, conversations: int = 3) -> list[float]:
    """Time to first token at each turn: the median over `conversations` conversations, one
    after another, each with its own system prompt (nothing of one is in the prefix cache for the next)."""
    runs = [one_conversation(url, model, turns, new_tokens, number) for number in range(conversations)]
    return [statistics.median(times) for times in zip(*runs)]


def one_conversation(url: str, model: str, turns: int, new_tokens: int, number: int) -> list[float]:
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    system = f"You are a helpful assistant. This is conversation {number + 1}."
    messages, ttfts = [{"role": "system", "content": system}], []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Tell me one more fact about {TOPICS[turn % len(TOPICS)]}."})
        result = one_stream(client, model, messages, new_tokens)
        ttfts.append(result["ttft_s"])
        messages.append({"role": "assistant", "content": result["text"]})
    return ttfts


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = result["rounds"]
    streams = [r["streams"] for r in rounds]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    axes[0].plot(streams, [r["tok_s"] for r in rounds], "o-")
    axes[0].set(title="aggregate tokens/s", xlabel="concurrent streams", xscale="log", xticks=streams)
    axes[0].set_xticklabels(streams)
    axes[1].plot(streams, [r["ttft_p50_s"] for r in rounds], "o-", label="p50")
    axes[1].plot(streams, [r["ttft_p95_s"] for r in rounds], "s--", label="p95")
    axes[1].set(title="time to first token (s)", xlabel="concurrent streams", xscale="log", xticks=streams)
    axes[1].set_xticklabels(streams)
    axes[1].legend()
    turns = result["turn_ttft_s"]
    axes[2].bar(range(1, len(turns) + 1), turns)
    axes[2].set(title="conversations: median first token (s) by turn", xlabel="turn")
    fig.suptitle(f"{result['model']} through /v1 on 127.0.0.1 · {os.cpu_count()} CPU cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(result: dict) -> str:
    lines = [f"{'streams':>8}{'tok/s':>9}{'x one':>8}{'p50 TTFT s':>12}{'p95 TTFT s':>12}{'errors':>8}"]
    alone = result["rounds"][0]["tok_s"]
    for r in result["rounds"]:
        p50 = f"{r['ttft_p50_s']:.2f}" if r["ttft_p50_s"] is not None else "-"
        p95 = f"{r['ttft_p95_s']:.2f}" if r["ttft_p95_s"] is not None else "-"
        lines.append(
            f"{r['streams']:>8}{r['tok_s']:>9.1f}{r['tok_s'] / alone:>7.1f}x{p50:>12}{p95:>12}{r['errors']:>8}"
        )
    turns = result["turn_ttft_s"]
    lines.append(f"conversations (median per turn): first token {turns[0]:.3f} s at turn 1, "
                 f"{turns[-1]:.3f} s at turn {len(turns)} ({turns[-1] / turns[0]:.2f}x)")  # fmt: skip
    m = result["memory_mb"]
    lines.append(f"server memory (RSS): {m['baseline']:.0f} MB after start-up, {m['loaded']:.0f} MB after the load, "
                 f"{m['idle']:.0f} MB after {result['idle_s']:.0f} s idle")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench_serve", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--streams", default="1,4,8,16,32")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--conversations", type=int, default=3, help="conversations whose median per turn is reported")
    parser.add_argument("--idle-s", type=float, default=15.0, help="idle wait before the last memory reading")
    parser.add_argument("--server-arg", action="append", default=[], help="passed to launch.py (repeatable)")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", metavar="PNG")
    args = parser.parse_args(argv)
    streams = [int(s) for s in args.streams.split(",")]
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(args.model, free_port(), data_dir, args.server_arg)
        try:
            server.wait_ready(args.start_timeout)
            from openai import OpenAI

            model = OpenAI(base_url=server.url, api_key="unused").models.list().data[0].id
            load_round(server.url, model, 1, 4)  # warm-up: the first reply builds the caches
            time.sleep(args.idle_s)
            baseline = rss_mb(server.process.pid)
            rounds = []
            for n in streams:
                print(f"{n} concurrent streams…", file=sys.stderr, flush=True)
                rounds.append(load_round(server.url, model, n, args.new_tokens))
            print("conversations…", file=sys.stderr, flush=True)
            turns = conversation_turns(server.url, model, args.turns, min(args.new_tokens, 32), args.conversations)
            loaded = rss_mb(server.process.pid)
            time.sleep(args.idle_s)
            idle = rss_mb(server.process.pid)
        finally:
            server.stop()
    result = {
        "model": model,
        "new_tokens": args.new_tokens,
        "rounds": rounds,
        "turn_ttft_s": turns,
        "memory_mb": {"baseline": baseline, "loaded": loaded, "idle": idle},
        "idle_s": args.idle_s,
        "cores": os.cpu_count(),
    }
    print(report(result))
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
