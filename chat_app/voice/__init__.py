"""Desktop voice mode, `python launch.py voice`: talk through the local microphone, hear the reply.

Push-to-talk (default): Enter starts recording, Enter stops it. Hands-free (--hands-free):
just speak; a pause of --min-silence-ms ends the turn (Silero VAD; --vad-threshold is its
sensitivity) and m mutes or unmutes. q quits, as does Ctrl-C. The transcript is printed,
the reply streams as text and is spoken sentence by sentence (espeak-ng); speaking, or
Enter, while it plays stops playback and generation (barge-in: with loudspeakers rather
than headphones the microphone hears the reply, so use --no-barge-in there).

sounddevice (PortAudio) is imported by this mode only; the web app never needs it. No
PortAudio, no microphone or a bad --input-device prints what to install or choose.

For tests and embedding, everything is injected:
    VoiceLoop(backend, transcriber, Microphone(device), keys, sink, VoiceOptions(...)).run()
`keys` is a queue of "enter" | "mute" | "quit" | "eof"; `sink` is anything with
play(waveform, sample_rate), stop() and reset() (`SoundDeviceSink` by default).
`loop.reports` holds one `TurnReport` (transcript, reply, latencies) per answered turn.

    devices.py   sounddevice glue: Microphone, SoundDeviceSink, device_list, start_keyboard
    loop.py      VoiceLoop, VoiceOptions, TurnReport
"""

from __future__ import annotations

import argparse
import queue
import sys

from chat_app.voice.devices import (
    Microphone,
    SoundDeviceSink,
    VoiceError,
    device_list,
    import_sounddevice,
    start_keyboard,
)
from chat_app.voice.loop import TurnReport, VoiceLoop, VoiceOptions
from engine.speech.tts import DEFAULT_VOICE, SpeechSynthesisError, synthesize
from engine.types import EngineError, GenerationConfig

__all__ = [
    "Microphone",
    "SoundDeviceSink",
    "TurnReport",
    "VoiceError",
    "VoiceLoop",
    "VoiceOptions",
    "add_arguments",
    "device_list",
    "import_sounddevice",
    "run",
    "start_keyboard",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hands-free", action="store_true", help="no keys: a pause ends each turn (m mutes)")
    parser.add_argument("--input-device", default=None, help="microphone: index or part of the name (--list-devices)")
    parser.add_argument("--output-device", default=None, help="speaker: index or part of the name")
    parser.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    parser.add_argument("--min-silence-ms", type=int, default=700, help="hands-free: pause that ends a turn")
    parser.add_argument("--vad-threshold", type=float, default=0.5, help="hands-free: speech sensitivity, 0..1")
    parser.add_argument("--no-speak", action="store_true", help="text replies only")
    parser.add_argument("--no-barge-in", action="store_true", help="do not stop the reply when you speak")
    parser.add_argument("--voice", default=DEFAULT_VOICE, help="espeak-ng voice (espeak-ng --voices)")
    parser.add_argument(
        "--asr-model",
        default=None,
        metavar="NAME_OR_DIR",
        help="faster-whisper model name (downloaded, online only) or directory; default: bundled tiny.en",
    )
    parser.add_argument("--system", default="", help="system prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--turns", type=int, default=None, help="stop after this many recordings")
    parser.add_argument("--timings", action="store_true", help="print latencies after each reply")


def run(args: argparse.Namespace) -> int:
    """The voice mode's entry point; returns the process exit status."""
    microphone = sink = None
    try:
        sd = import_sounddevice()
        if args.list_devices:
            print(device_list(sd))
            return 0
        options = VoiceOptions(
            hands_free=args.hands_free,
            min_silence_ms=args.min_silence_ms,
            vad_threshold=args.vad_threshold,
            speak=not args.no_speak,
            barge_in=not args.no_barge_in,
            voice=args.voice,
            max_turns=args.turns,
            timings=args.timings,
        )
        generation = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
        if options.speak:
            try:
                synthesize("ready", args.voice)
            except SpeechSynthesisError as error:  # no espeak-ng, unknown voice: text replies only
                print(f"note: spoken replies are off: {error}", file=sys.stderr)
                options.speak = False
        microphone = Microphone(args.input_device, sd)  # before the slow loads: a missing mic fails fast
        sink = SoundDeviceSink(args.output_device, sd) if options.speak else None
        from engine.backends import default_specs, load_backend
        from engine.cpu_threads import reserve_cores_for_decoding
        from engine.speech.asr import get_transcriber, set_default_model

        reserve_cores_for_decoding(args.device)  # the scheduler's thread decodes on every core

        print(f"Loading the model {args.model or 'builtin'} and the speech recognizer…", file=sys.stderr)
        backend = load_backend(args.model or default_specs()[0], device=args.device)
        set_default_model(args.asr_model, args.device)
        transcriber = get_transcriber(args.asr_model, args.device)
        print(f"Microphone: {microphone.name}", file=sys.stderr)
        keys: queue.Queue = queue.Queue()
        start_keyboard(keys)
        VoiceLoop(backend, transcriber, microphone, keys, sink, options, generation, args.system).run()
    except (VoiceError, EngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
        return 130
    finally:
        for device in (microphone, sink):
            if device is not None:
                device.close()
    return 0
