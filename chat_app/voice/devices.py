"""The voice mode's sound devices and keys (sounddevice/PortAudio is imported here only, lazily).

sd = import_sounddevice()            # VoiceError naming what to install when PortAudio is missing
print(device_list(sd))               # "  3  USB Mic  (in, 48000 Hz)  <- default input"
microphone = Microphone(device)      # 16 kHz mono float32 chunks: read(timeout), drain(), close()
sink = SoundDeviceSink(device)       # play(waveform, rate) -> bool, stop(), reset(), close()
start_keyboard(keys)                 # "enter" | "mute" | "quit" | "eof" into a queue
"""

from __future__ import annotations

import queue
import sys
import threading

import numpy as np

SAMPLE_RATE = 16000
BLOCK = 512  # 32 ms, one VAD window
PORTAUDIO_MISSING = (
    "The voice mode needs PortAudio, which is not installed: apt-get install libportaudio2 "
    "(Debian/Ubuntu), dnf install portaudio (Fedora) or brew install portaudio (macOS). "
    "The web app (`python launch.py serve`) does not need it."
)


class VoiceError(Exception):
    """The voice mode cannot start (no PortAudio, no microphone, bad device); str() is for people."""


def import_sounddevice():
    try:
        import sounddevice
    except ImportError:
        raise VoiceError("The voice mode needs the sounddevice package: pip install sounddevice.") from None
    except OSError:
        raise VoiceError(PORTAUDIO_MISSING) from None
    return sounddevice


def device_list(sd) -> str:
    default_in, default_out = sd.default.device
    lines = []
    for index, device in enumerate(sd.query_devices()):
        kinds = [k for k, n in (("in", device["max_input_channels"]), ("out", device["max_output_channels"])) if n]
        marks = [m for m, d in (("default input", default_in), ("default output", default_out)) if d == index]
        note = f"  <- {' and '.join(marks)}" if marks else ""
        lines.append(f"{index:3d}  {device['name']}  ({'/'.join(kinds)}, {device['default_samplerate']:.0f} Hz){note}")
    return "\n".join(lines) or (
        "No audio devices found. Connect a microphone, and on Linux check that "
        "PulseAudio or PipeWire is running (with its ALSA plugin: libasound2-plugins)."
    )


def parse_device(value: str | int | None):
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class Microphone:
    """A PortAudio input stream (mono) read as 16 kHz float32 chunks."""

    def __init__(self, device=None, sd=None):
        sd = sd or import_sounddevice()
        device = parse_device(device)
        try:
            info = sd.query_devices(device, kind="input")
        except (ValueError, sd.PortAudioError) as error:
            which = f"The input device {device!r} was not found" if device is not None else "No microphone was found"
            raise VoiceError(
                f"{which} ({error}). Connect a microphone, or choose one with --input-device "
                "(python launch.py voice --list-devices)."
            ) from None
        self.name, self.queue = info["name"], queue.Queue()
        try:
            sd.check_input_settings(device, channels=1, samplerate=SAMPLE_RATE, dtype="float32")
            self.rate = SAMPLE_RATE
        except Exception:  # the device cannot record at 16 kHz: record at its own rate and resample
            self.rate = int(info["default_samplerate"])
        try:
            # 0.2 s, not PortAudio's "high" input latency: with that the ALSA pulse device delivers
            # nothing for its first second, and the start of what is said is lost.
            self._live, self.overflows = threading.Event(), 0
            self.stream = sd.InputStream(
                device=device,
                channels=1,
                samplerate=self.rate,
                dtype="float32",
                blocksize=BLOCK * self.rate // SAMPLE_RATE,
                latency=0.2,
                callback=self._callback,
            )
            self.stream.start()
            self._live.wait(2.0)  # the microphone hears from here on
        except sd.PortAudioError as error:
            raise VoiceError(
                f"Could not record from {self.name!r} ({error}). Choose another input with "
                "--input-device (see --list-devices)."
            ) from None

    def _callback(self, indata, frames, time_info, status) -> None:
        self.overflows += bool(status.input_overflow)  # samples were lost (the machine was too busy)
        self.queue.put(indata[:, 0].copy())
        self._live.set()

    def read(self, timeout: float = 0.1) -> np.ndarray | None:
        try:
            chunk = self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()
        except queue.Empty:
            return None
        if self.rate != SAMPLE_RATE:  # linear interpolation: fine for speech at 44.1/48 kHz
            n = round(chunk.size * SAMPLE_RATE / self.rate)
            chunk = np.interp(np.linspace(0, chunk.size - 1, n), np.arange(chunk.size), chunk).astype(np.float32)
        return chunk

    def drain(self) -> None:
        while self.read(0) is not None:
            pass

    def close(self) -> None:
        self.stream.abort()
        self.stream.close()


class SoundDeviceSink:
    """Plays waveforms on a PortAudio output, block by block, so that `stop()` cuts in at once."""

    def __init__(self, device=None, sd=None):
        self.sd, self.device = sd or import_sounddevice(), parse_device(device)
        self._stream, self._rate, self._stopped = None, None, threading.Event()

    def reset(self) -> None:
        self._stopped.clear()

    def stop(self) -> None:
        self._stopped.set()

    def play(self, waveform: np.ndarray, sample_rate: int) -> bool:
        """Blocks until played (True) or stopped (False)."""
        if self._stream is None or self._rate != sample_rate:
            self.close()
            self._stream = self.sd.OutputStream(samplerate=sample_rate, channels=1, dtype="float32", device=self.device)
            self._stream.start()
            self._rate = sample_rate
        for start in range(0, len(waveform), 1024):
            if self._stopped.is_set():
                self._stream.abort()  # drops what is buffered
                self._stream = None
                return False
            self._stream.write(np.ascontiguousarray(waveform[start : start + 1024], dtype=np.float32)[:, None])
        return True

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()  # lets the buffered audio finish
            self._stream.close()
            self._stream = None


def start_keyboard(keys: queue.Queue, stream=sys.stdin) -> None:
    """Feed key events from the terminal: single keys on a TTY, lines otherwise (EOF -> "eof")."""

    def lines():
        for line in iter(stream.readline, ""):
            keys.put({"": "enter", "m": "mute", "q": "quit"}.get(line.strip().lower(), "enter"))
        keys.put("eof")

    def single_keys():
        import termios
        import tty

        saved = termios.tcgetattr(stream)
        try:
            tty.setcbreak(stream.fileno())
            while (char := stream.read(1)) != "":
                event = {"\n": "enter", "\r": "enter", "m": "mute", "q": "quit"}.get(char.lower())
                if event:
                    keys.put(event)
        finally:
            termios.tcsetattr(stream, termios.TCSADRAIN, saved)
        keys.put("eof")

    threading.Thread(target=single_keys if stream.isatty() else lines, daemon=True, name="keyboard").start()
