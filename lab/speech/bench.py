"""Speech benchmark: `python -m lab.speech.bench [--json] [--model DIR] [--runs 3]`.

Measures on this machine, with a 5-second utterance spoken by espeak-ng:

- ASR real-time factor: transcription time / audio duration (median of --runs, after a warm-up;
  the content cache is bypassed), and the model's load time;
- the desktop voice pipeline, in real time: 32 ms chunks arrive as from a microphone (0.5 s
  of silence, the utterance, silence); Silero VAD decides the end of speech after
  --min-silence-ms (with `engine.speech.turns.TurnTaker`, as the voice mode does: the
  transcription starts early, during the pause; --no-early waits for the decision); then the
  prompt, the reply stream, the first sentence's synthesis. From the moment the voice stops
  (its last sample above 1% of the peak):
    end of speech -> first reply token
    end of speech -> first audible reply sample (the first sentence's audio is ready to play)
  The audio device's own output latency (tens of ms with PortAudio) is not included.

The reply comes from --model DIR, else the shipped built-in model, else a random-weight model
of the "small" preset (same compute, meaningless text: its reply may be empty, and then its
first token is the end marker, and its first sentence may end late or never, so an estimate
for a typical first sentence at the same model speed is printed beside it).
A table goes to stdout; with --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

UTTERANCE = "Hello, could you please tell me what you can see in this picture, and what colors it has?"
TYPICAL_FIRST_SENTENCE = "I can see a red circle and a blue square."
CHUNK = 512


def _backend(model: str | None, device: str):
    from engine.backends import DEFAULT_MODEL, load_backend

    if model or (DEFAULT_MODEL / "config.json").is_file():
        return load_backend(model, device=device), model or "built-in"
    import torch

    from engine.backends.builtin import BuiltinBackend
    from engine.config import preset
    from engine.model import MultimodalModel
    from engine.tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer.train([UTTERANCE, TYPICAL_FIRST_SENTENCE, "What is in the picture?"] * 50, vocab_size=512)
    torch.manual_seed(0)
    network = MultimodalModel(preset("small", vocab_size=tokenizer.vocab_size))
    return BuiltinBackend(network, tokenizer, name="random:small"), "random weights, preset small"


def _microphone(audio: np.ndarray, chunks: queue.Queue) -> float:
    """Deliver audio in real time from a thread; returns the wall time of sample 0."""
    start = time.perf_counter() + 0.05

    def play():
        for i in range(0, audio.size, CHUNK):
            time.sleep(max(0.0, start + (i + CHUNK) / 16000 - time.perf_counter()))
            chunks.put(audio[i : i + CHUNK])

    threading.Thread(target=play, daemon=True).start()
    return start


def voice_turn(
    audio: np.ndarray, speech_end_s: float, transcriber, backend, min_silence_ms: int, early: bool = True
) -> dict:
    """One hands-free turn through VAD, ASR, the backend and TTS; latencies from the end of speech."""
    from engine.speech.reply import speech_turn, spoken_reply
    from engine.speech.tts import wav_bytes
    from engine.speech.turns import TurnTaker
    from engine.types import Conversation, GenerationConfig

    chunks: queue.Queue = queue.Queue()
    taker, recording = TurnTaker(transcriber if early else None, min_silence_ms=min_silence_ms), None
    start = _microphone(audio, chunks)
    while recording is None:
        recording = taker.feed(chunks.get())
    decided = time.perf_counter()
    speech_end = start + speech_end_s
    wav = wav_bytes(recording, 16000)
    transcript = transcriber.transcribe(wav, require_speech=True)
    heard = time.perf_counter()
    conversation = Conversation(turns=[speech_turn(backend, wav, transcript)])
    first_token = first_audio = None
    stream = spoken_reply(backend, conversation, GenerationConfig(max_new_tokens=64, temperature=0.0))
    for event in stream:
        if event.kind == "text" and first_token is None:
            first_token = event.at
        if event.kind == "speech":
            first_audio = event.at
            break
    stream.close()
    if first_token is None:  # an empty reply (random weights): its first token was the end marker
        first_token = time.perf_counter()
    return {
        "vad_decision_s": decided - speech_end,
        "asr_s": heard - decided,
        "first_token_s": first_token - speech_end if first_token else None,
        "first_audio_s": first_audio - speech_end if first_audio else None,
        "transcript": transcript.text,
    }


def _spoken_utterance() -> np.ndarray:
    """UTTERANCE as espeak-ng says it: 16 kHz float samples."""
    from engine.preprocess import read_audio

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "utterance.wav")
        subprocess.run(["espeak-ng", "-w", path, UTTERANCE], check=True)
        return read_audio(path).numpy()


def _time_asr(args, utterance: np.ndarray, duration: float) -> tuple[object, float, list[float]]:
    """Load the transcriber and time --runs transcriptions after a warm-up: (transcriber, load s, [s])."""
    from engine.speech.asr import get_transcriber, set_default_model

    started = time.perf_counter()
    set_default_model(args.asr_model, args.device)  # the prompt's "asr" note shares its cache
    transcriber = get_transcriber(args.asr_model, args.device)
    transcriber.beam_size = args.beam_size
    load_s = time.perf_counter() - started
    transcriber.transcribe(utterance)  # warm-up
    asr_times = []
    for run_index in range(args.runs):
        began = time.perf_counter()
        transcriber.transcribe(utterance + np.float32((run_index + 1) * 1e-6))
        asr_times.append(time.perf_counter() - began)
    print(
        f"ASR {transcriber.name} ({transcriber.device}, {transcriber.compute_type}, beam {args.beam_size}): "
        f"{statistics.median(asr_times):.3f} s for {duration:.2f} s",
        file=sys.stderr,
    )
    return transcriber, load_s, asr_times


def run(args) -> dict:
    from engine.speech.tts import synthesize
    from engine.types import Conversation, GenerationConfig, ReplyInfo, Turn

    utterance = _spoken_utterance()
    loud = np.flatnonzero(np.abs(utterance) > 0.01 * np.abs(utterance).max())
    duration = utterance.size / 16000
    transcriber, load_s, asr_times = _time_asr(args, utterance, duration)
    backend, backend_note = _backend(args.model, args.device)
    # the model's decode speed on a text turn (also its warm-up), for the typical-sentence estimate
    info = ReplyInfo()
    "".join(
        backend.stream(
            Conversation(turns=[Turn("user", UTTERANCE)]),
            GenerationConfig(max_new_tokens=48, temperature=0.0),
            info=info,
        )
    )
    pad = np.zeros(8000, np.float32)
    audio = np.concatenate([pad, utterance, np.zeros(48000, np.float32)])
    speech_end_s = (pad.size + loud[-1] + 1) / 16000
    turns = []
    for run_index in range(args.runs + 1):  # the first turn warms the audio path up and is not counted
        transcriber.clear_cache()
        turns.append(voice_turn(audio, speech_end_s, transcriber, backend, args.min_silence_ms, not args.no_early))
        print(
            f"voice turn {run_index}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in turns[-1].items() if isinstance(v, float)),
            file=sys.stderr,
        )
    turns = turns[1:]
    # a typical first sentence at this model's speed: its tokens decoded after the first, then spoken
    tokenizer = getattr(backend, "tokenizer", None)
    sentence_tokens = len(tokenizer.encode(TYPICAL_FIRST_SENTENCE)) if tokenizer else 12
    began = time.perf_counter()
    synthesize(TYPICAL_FIRST_SENTENCE)
    tts_s = time.perf_counter() - began

    def median(key):  # over the turns that had it (a random model's reply can be empty)
        values = [t[key] for t in turns if t[key] is not None]
        return statistics.median(values) if values else None

    first_token = median("first_token_s")
    speed = info.tokens_per_second if info.new_tokens >= 8 else None  # too short a reply to time
    decode_s = (sentence_tokens - 1) / speed if speed else None
    return {
        "asr": {
            "model": transcriber.name,
            "device": transcriber.device,
            "compute_type": transcriber.compute_type,
            "beam_size": args.beam_size,
            "load_s": round(load_s, 3),
            "audio_s": round(duration, 2),
            "transcribe_s": round(statistics.median(asr_times), 3),
            "rtf": round(statistics.median(asr_times) / duration, 3),
        },
        "voice": {
            "backend": f"{backend.name} ({backend_note})",
            "min_silence_ms": args.min_silence_ms,
            "early_asr": not args.no_early,
            "vad_decision_s": round(median("vad_decision_s"), 3),
            "asr_s": round(median("asr_s"), 3),
            "first_token_s": round(first_token, 3) if first_token is not None else None,
            "first_audio_s": round(median("first_audio_s"), 3) if median("first_audio_s") is not None else None,
            "first_audio_typical_sentence_s": (
                round(first_token + decode_s + tts_s, 3) if first_token is not None and decode_s is not None else None
            ),
            "decode_tok_s": round(speed, 1) if speed else None,
            "tts_first_sentence_s": round(tts_s, 3),
            "transcript": turns[-1]["transcript"],
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "runs": args.runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.speech.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model directory for the replies (default: built-in or random)")
    parser.add_argument("--asr-model", default=None, help="faster-whisper name or directory (default: bundled tiny.en)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--min-silence-ms", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-early", action="store_true", help="no early transcription during the pause")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    result = run(args)
    asr, voice = result["asr"], result["voice"]
    fmt = lambda value: "n/a" if value is None else f"{value:.2f} s"
    print(
        f"ASR real-time factor ({asr['model']}, {asr['device']} {asr['compute_type']}, beam {asr['beam_size']}): "
        f"{asr['rtf']:.3f}  ({asr['transcribe_s']:.2f} s for {asr['audio_s']:.2f} s of speech; "
        f"load {asr['load_s']:.2f} s)"
    )
    print(f"Voice turn, {voice['backend']}, end of speech after {voice['min_silence_ms']} ms of pause:")
    print(f"  VAD decision           {fmt(voice['vad_decision_s'])}\n  + transcription        {fmt(voice['asr_s'])}")
    print(
        f"  -> first reply token   {fmt(voice['first_token_s'])}\n"
        f"  -> first audible sample {fmt(voice['first_audio_s'])}"
        f"  (typical first sentence at {voice['decode_tok_s']} tok/s: {fmt(voice['first_audio_typical_sentence_s'])})"
    )
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
