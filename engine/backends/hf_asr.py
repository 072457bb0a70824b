"""Speech → text with a transformers speech-to-text model (Whisper), for text-only backends.

    transcribe = WhisperTranscriber.from_pretrained("openai/whisper-small", device="auto")
    transcribe("question.webm")        # -> "what is the capital of france"
    HFBackend.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct", transcriber=transcribe)

Audio is decoded at the edge by `engine.preprocess.read_audio` (any format FFmpeg reads,
16 kHz mono, 10-minute limit). Clips up to 30 s are decoded in one window; longer ones use
Whisper's sequential long-form decoding. One `generate` at a time (a lock), from any thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from engine import preprocess
from engine.backends.errors import OOM_ADVICE, BackendError
from engine.backends.hf_loading import load_pretrained
from engine.types import MediaSource

WINDOW_SECONDS = 30


class WhisperTranscriber:
    def __init__(self, model, processor, name: str = "whisper", max_new_tokens: int = 440):
        self.model, self.processor, self.name = model.eval(), processor, name
        self.max_new_tokens = max_new_tokens
        self.sample_rate = processor.feature_extractor.sampling_rate
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, spec: str | Path, device: str = "auto") -> WhisperTranscriber:
        model, processor, _, _ = load_pretrained(str(spec), device, expect=("speech",))
        path = Path(str(spec)).expanduser()
        return cls(model, processor, name="asr:" + (path.name if path.is_dir() else str(spec)))

    def __call__(self, source: MediaSource) -> str:
        waveform = preprocess.read_audio(source, self.sample_rate).numpy()
        long_form = len(waveform) > WINDOW_SECONDS * self.sample_rate
        options = dict(truncation=False, padding="longest", return_attention_mask=True) if long_form else {}
        features = self.processor.feature_extractor(
            waveform, sampling_rate=self.sample_rate, return_tensors="pt", **options
        )
        device = next(self.model.parameters()).device
        inputs = {
            k: v.to(device, self.model.dtype) if v.is_floating_point() else v.to(device) for k, v in features.items()
        }
        budget = self.max_new_tokens
        max_target = getattr(self.model.config, "max_target_positions", None)
        if not long_form and max_target:
            budget = min(budget, max_target - 4)  # the start tokens take a few positions
        try:
            with self._lock, torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=budget)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise BackendError(f"{self.name} ran out of GPU memory while transcribing. " + OOM_ADVICE) from None
        sequences = ids.sequences if hasattr(ids, "sequences") else ids
        return self.processor.batch_decode(sequences, skip_special_tokens=True)[0].strip()
