"""One-shot question from the command line: `python launch.py ask [...] "message"`.

Streams the reply to stdout as it is generated (logs go to stderr). With `--json` it then
prints one JSON line: reply, transcript, observations, model, dropped_turns, timings.
`transcript` is what was said in the --audio clips (engine.speech: the bundled Whisper
tiny.en, or --asr-model); the model itself hears it through its "asr" observation.
Bad input (a missing or unreadable file, a bad model directory, bad settings) prints one
line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from engine.types import Conversation, EngineError, GenerationConfig, InputError, ReplyInfo, Turn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("message", nargs="?", default="", help="what to ask (may be empty with --image/--audio)")
    parser.add_argument("--image", action="append", default=[], metavar="FILE", help="attach an image (repeatable)")
    parser.add_argument(
        "--audio", action="append", default=[], metavar="FILE", help="attach an audio clip (repeatable)"
    )
    parser.add_argument("--system", default="", help="system prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--stop", action="append", default=[], help="stop sequence (repeatable)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--asr-model",
        default=None,
        metavar="NAME_OR_DIR",
        help="speech recognition model for --audio: a faster-whisper name (downloaded, online "
        "only) or a CTranslate2 directory (default: the bundled Whisper tiny.en)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def _transcribe(clips: list[str], asr_model: str | None) -> str:
    """The speech in the clips (joined), also shown on stderr; the prompt reuses the cached result."""
    from engine.speech.asr import default_transcriber, set_default_model

    set_default_model(asr_model)
    texts = []
    for clip in clips:
        transcript = default_transcriber().transcribe(clip)
        for warning in transcript.warnings:
            print(f"note: {warning}", file=sys.stderr)
        if transcript.heard:
            print(f"heard in {clip}: {transcript.text}", file=sys.stderr)
            texts.append(transcript.text)
    return " ".join(texts)


def run(args: argparse.Namespace) -> int:
    """Answer one message; returns the process exit status."""
    started = time.perf_counter()
    try:
        if not (args.message.strip() or args.image or args.audio):
            raise InputError("Nothing to ask: give a message, --image or --audio.")
        config = GenerationConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            stop=tuple(args.stop),
            seed=args.seed,
        )
        from engine.backends import default_specs, load_backend  # imports torch: after the cheap checks
        from engine.cpu_threads import reserve_cores_for_decoding

        reserve_cores_for_decoding(args.device)  # the scheduler's thread decodes on every core

        print(f"Loading model {args.model or 'builtin'} (device {args.device})…", file=sys.stderr)
        backend = load_backend(args.model or default_specs()[0], device=args.device)
        loaded = time.perf_counter()
        transcript = _transcribe(args.audio, args.asr_model) if args.audio else None
        heard = time.perf_counter()
        conversation = Conversation(
            args.system, [Turn("user", args.message, images=list(args.image), audio=list(args.audio))]
        )
        info = ReplyInfo()
        pieces = []
        for piece in backend.stream(conversation, config, info=info):
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if args.json:
        summary = {
            "reply": "".join(pieces),
            "transcript": transcript,  # what was said in the --audio clips (None without audio)
            "observations": info.observations,
            "model": backend.name,
            "device": str(getattr(backend, "device", "")),
            "finish_reason": info.finish_reason,
            "dropped_turns": info.dropped_turns,
            "prompt_tokens": info.prompt_tokens,
            "new_tokens": info.new_tokens,
            "timings": {
                "load_s": round(loaded - started, 4),
                "asr_s": round(heard - loaded, 4),
                "first_token_s": round(info.time_to_first_token_s or 0.0, 4),
                "total_s": round(info.total_time_s, 4),
                "tokens_per_s": round(info.tokens_per_second, 2),
            },
        }
        print(json.dumps(summary, ensure_ascii=False))
    return 0
