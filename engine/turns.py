"""Turn preparation: files → validated media → observations, once per medium's content.

    needs = Needs.for_builtin(config)                 # what the built-in model takes
    needs = Needs(pictures=True, transcriber=hear)    # a vision model that hears through Whisper
    prepared = prepare_turn(turn, needs)              # PreparedTurn: decoded media + observation lines
    prepared.observations                             # ("image 1: text: EXIT; faces: 0; colors: red",)
    prepared.text_with_notes()                        # "[image 1: text: EXIT; ...]\nWhat is it?"

This is the only place the engine reads a turn's files: `engine.prompt` (the built-in model),
`engine.backends.hf` and `engine.backends.openai_client` all start from prepared turns. Each
medium is prepared once per content (sha256 of its bytes) and needs, in one shared
`LRUCache`: a photo shown in the first turn is not decoded, letterboxed or read by the tools
again on every later reply. Observation lines are written exactly as the built-in model was
trained on them ("image 1: text: ...; faces: 0; colors: ...", "audio 1: heard: ...").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine import preprocess
from engine.cache import LRUCache, content_digest
from engine.config import ModelConfig
from engine.observe import ImageObservations, observe_image
from engine.types import InputError, MediaSource, Role, Turn

Transcriber = Callable[[MediaSource], str]
CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Needs:
    """What a backend wants from each medium; everything is off unless asked for."""

    image_size: int | None = None  # letterboxed (3, S, S) tensors for the built-in image encoder
    pictures: bool = False  # the decoded RGB pictures (vision models, image parts sent to a server)
    image_tools: tuple[str, ...] = ()  # offline tools whose findings become "image i: ..." lines
    mel: tuple[int, int, int] | None = None  # (n_mels, hop_length, sample_rate): log-mel features
    waveform_rate: int | None = None  # the mono waveform at this rate (audio sent to a server as is)
    transcriber: Transcriber | None = None  # speech -> text for "audio i: heard: ..." lines

    @classmethod
    def for_builtin(cls, config: ModelConfig) -> Needs:
        """The built-in model: image tensors and log-mel features, plus the observations it was trained with."""
        return cls(
            image_size=config.image_size,
            image_tools=tuple(tool for tool in config.observations if tool != "asr"),
            mel=(config.n_mels, config.audio_hop_length, config.sample_rate),
            transcriber=_hear if "asr" in config.observations else None,
        )


def _hear(source: MediaSource) -> str:
    from engine.speech.asr import hear  # loads Whisper on first use; cached by content

    return hear(source)


@dataclass(frozen=True)
class PreparedImage:
    digest: str | None  # sha256 of the file's bytes (None when it was not cached)
    picture: object | None = None  # PIL.Image.Image, RGB, EXIF applied (with Needs.pictures)
    tensor: object | None = None  # torch.Tensor (3, S, S) in [-1, 1] (with Needs.image_size)
    observation: str | None = None  # "text: ...; faces: 0; colors: ..." (with Needs.image_tools)
    findings: ImageObservations | None = None  # the same, as the tools' record (with Needs.image_tools)


@dataclass(frozen=True)
class PreparedAudio:
    digest: str | None
    mel: object | None = None  # torch.Tensor (n_mels, frames) (with Needs.mel)
    waveform: object | None = None  # torch.Tensor (samples,) mono float32 (with Needs.waveform_rate)
    heard: str | None = None  # the transcript, or "(no speech)" (with Needs.transcriber)


@dataclass(frozen=True)
class PreparedTurn:
    """One turn with its media decoded and observed; reading it does no I/O."""

    role: Role
    text: str = ""
    images: tuple[PreparedImage, ...] = ()
    audio: tuple[PreparedAudio, ...] = ()

    @property
    def observations(self) -> tuple[str, ...]:
        """What the tools reported: one line per observed picture, then one per transcribed clip."""
        lines = [
            f"image {i}: {image.observation}" for i, image in enumerate(self.images, 1) if image.observation is not None
        ]
        return tuple(
            lines
            + [f"audio {i}: heard: {clip.heard}" for i, clip in enumerate(self.audio, 1) if clip.heard is not None]
        )

    def text_with_notes(self) -> str:
        """The turn's text after its observations, each as a "[...]" line (how every model is told)."""
        return with_notes(self.text, self.observations)


def with_notes(text: str, notes: Sequence[str]) -> str:
    return "".join(f"[{note}]\n" for note in notes) + text


def _nbytes(media: PreparedImage | PreparedAudio) -> int:
    size = 256
    for value in vars(media).values():
        if hasattr(value, "nbytes"):  # tensors
            size += value.nbytes
        elif hasattr(value, "width"):  # PIL images (RGB: 3 bytes a pixel)
            size += value.width * value.height * 3
    return size


# Prepared media by (kind, content digest, needs); shared by every backend in the process.
_prepared: LRUCache[PreparedImage | PreparedAudio] = LRUCache(CACHE_BYTES, weigh=_nbytes)


def _cached(key: tuple, compute):
    try:
        hash(key)
    except TypeError:  # an unhashable transcriber: prepare it every time
        return compute()
    return _prepared.get_or_compute(key, compute) if key[1] is not None else compute()


def _image(source: MediaSource, needs: Needs) -> PreparedImage:
    digest = content_digest(source)

    def compute() -> PreparedImage:
        picture = preprocess.read_image(source)
        findings = observe_image(picture, needs.image_tools) if needs.image_tools else None
        return PreparedImage(
            digest,
            picture=picture if needs.pictures else None,
            tensor=preprocess.image_to_tensor(picture, needs.image_size) if needs.image_size else None,
            observation=findings.as_text() if findings is not None else None,
            findings=findings,
        )

    return _cached(("image", digest, needs.image_size, needs.pictures, needs.image_tools), compute)


def _audio(source: MediaSource, needs: Needs) -> PreparedAudio:
    digest = content_digest(source)

    def compute() -> PreparedAudio:
        mel = waveform = None
        if needs.mel is not None:
            n_mels, hop_length, sample_rate = needs.mel
            mel = preprocess.load_audio_features(source, n_mels=n_mels, hop_length=hop_length, sample_rate=sample_rate)
        if needs.waveform_rate is not None:
            waveform = preprocess.read_audio(source, needs.waveform_rate)
        heard = needs.transcriber(source).strip() if needs.transcriber is not None else None
        return PreparedAudio(digest, mel=mel, waveform=waveform, heard=heard)

    return _cached(("audio", digest, needs.mel, needs.waveform_rate, needs.transcriber), compute)


def prepare_turn(turn: Turn, needs: Needs) -> PreparedTurn:
    """Decode, validate and observe a turn's media as `needs` asks (cached by content).

    Raises InputError when a turn other than the user's carries media, and the ImageError /
    AudioError of `engine.preprocess` for files that cannot be used.
    """
    if (turn.images or turn.audio) and turn.role != "user":
        raise InputError("Only user turns can carry images or audio.")
    images = tuple(_image(source, needs) for source in turn.images)
    audio = tuple(_audio(source, needs) for source in turn.audio)
    return PreparedTurn(turn.role, turn.text, images, audio)


def prepare_turns(turns: Sequence[Turn], needs: Needs) -> list[PreparedTurn]:
    """`prepare_turn` for each turn, in order."""
    return [prepare_turn(turn, needs) for turn in turns]


def clear_cache() -> None:
    """Forget every prepared medium (tests; a process that changed its tools' settings)."""
    _prepared.clear()
