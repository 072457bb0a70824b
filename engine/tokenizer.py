"""Text ↔ token ids, with the chat's special tokens, saved as `tokenizer.json`.

`ChatTokenizer` wraps a Hugging Face `tokenizers` byte-level BPE model:

    tokenizer = ChatTokenizer.train(texts, vocab_size=4096)
    tokenizer.save(directory)                 # writes directory/tokenizer.json
    tokenizer = ChatTokenizer.load(directory)
    ids = tokenizer.encode("hello")           # special-token text in user input stays plain text
    detok = tokenizer.incremental_decoder()   # streaming: never yields broken UTF-8
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers.decoders import DecodeStream

from engine.types import CheckpointError

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
IMAGE, AUDIO, MEDIA = "<|image|>", "<|audio|>", "<|media|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, SYSTEM, USER, ASSISTANT, END, IMAGE, AUDIO, MEDIA)
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

TOKENIZER_FILE = "tokenizer.json"


class ChatTokenizer:
    """Byte-level BPE with fixed special tokens; any Unicode text round-trips."""

    def __init__(self, tokenizer: Tokenizer):
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise CheckpointError(f"The tokenizer lacks the special tokens {', '.join(missing)}.")
        tokenizer.encode_special_tokens = True  # "<|user|>" typed by a person is plain text
        self._tokenizer = tokenizer
        self.special = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
        self.pad_id, self.bos_id, self.eos_id = self.special[PAD], self.special[BOS], self.special[EOS]
        self.end_id = self.special[END]
        self.image_id, self.audio_id, self.media_id = self.special[IMAGE], self.special[AUDIO], self.special[MEDIA]

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> ChatTokenizer:
        """Learn a byte-level BPE vocabulary of `vocab_size` entries from `texts`."""
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer)

    def save(self, directory: Path) -> None:
        self._tokenizer.save(str(Path(directory) / TOKENIZER_FILE))

    @classmethod
    def load(cls, directory: Path) -> ChatTokenizer:
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: a model directory needs {TOKENIZER_FILE}.")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except CheckpointError:
            raise
        except Exception as error:  # tokenizers raises a bare Exception on bad JSON
            raise CheckpointError(f"{path} is corrupt: {error}") from error

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def role_id(self, role: str) -> int:
        return self.special[ROLE_TOKENS[role]]

    def incremental_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)


class IncrementalDecoder:
    """Turns a growing list of token ids into text pieces, holding back incomplete UTF-8.

    `tokenizers`' DecodeStream does the work (it decodes a short window of ids, as
    text-generation-inference does, and emits text only once it no longer ends in a partial
    character); `flush` adds what it still holds at the end.
    """

    def __init__(self, tokenizer: ChatTokenizer):
        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=True)
        self.ids: list[int] = []
        self._read_offset = 0  # ids before this were already turned into text

    def push(self, token_id: int) -> str:
        """Add one id; return the new text it completes (maybe "")."""
        self.ids.append(token_id)
        piece = self._stream.step(self._tokenizer._tokenizer, token_id)
        if piece is None:
            return ""
        self._read_offset = len(self.ids)
        return piece

    def flush(self) -> str:
        """Text still held back at the end (a truncated character becomes U+FFFD); ends the stream."""
        done = self._tokenizer.decode(self.ids[: self._read_offset])
        text = self._tokenizer.decode(self.ids)[len(done) :]
        self._stream, self._read_offset = DecodeStream(skip_special_tokens=True), len(self.ids)
        return text
