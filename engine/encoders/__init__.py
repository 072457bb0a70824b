"""One encoder per modality; each turns its input into a sequence of vectors.

- `TextEncoder`: token ids (B, T) → (B, T, d_model) embeddings (also the tied output head).
- `ImageEncoder`: pixels (N, 3, S, S) → (N, P, C_image) patch tokens, P = (S / 2**stages)**2.
- `AudioEncoder`: one log-mel clip (n_mels, F) → (L, C_audio) frame tokens, L = config.audio_tokens(F).

Projection into the decoder's width happens in `engine.fusion`.
"""

from engine.encoders.audio import AudioEncoder
from engine.encoders.image import ImageEncoder
from engine.encoders.text import TextEncoder

__all__ = ["AudioEncoder", "ImageEncoder", "TextEncoder"]
