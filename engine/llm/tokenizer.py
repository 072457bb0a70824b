"""A pretrained model's own tokenizer and chat template, from a GGUF file's metadata or a Hugging Face folder.

    tokenizer = LMTokenizer.load(directory)           # tokenizer.json + tokenizer_config.json
    ids = tokenizer.chat_ids([{"role": "user", "content": "Hi"}])   # the model's chat template
    tokenizer.stop_ids                                # ids that end a reply (<|im_end|>, <|eot_id|>, ...)

The template is rendered by transformers' sandboxed Jinja renderer and the text encoded with
the added tokens matched, exactly as `tokenizer.apply_chat_template(..., tokenize=True)` does.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from engine.tokenizer import IncrementalDecoder
from engine.types import CheckpointError

TOKENIZER_FILE, TOKENIZER_CONFIG_FILE = "tokenizer.json", "tokenizer_config.json"
GENERATION_CONFIG_FILE = "generation_config.json"

# How llama.cpp splits text before byte-level BPE, by `tokenizer.ggml.pre` (llama-vocab.cpp).
_GPT2_SPLIT = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

IMAGE_MARK = "\ue000"  # where a picture's image tokens go in a message (chat_ids_with_media)
AUDIO_MARK = "\ue001"  # where a clip's audio tokens go


def _pre_tokenizer(kind: str):
    if kind in ("gpt2", "default"):
        return _GPT2_SPLIT
    if kind in ("smollm", "starcoder", "refact", "codeshell"):  # each digit alone, then GPT-2's split
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _GPT2_SPLIT])
    if kind in ("llama-bpe", "llama3", "llama-v3", "smaug-bpe", "dbrx"):
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    return None


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's printable spelling of the 256 bytes (the alphabet byte-level vocabularies are written in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    extra = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}


class LMTokenizer:
    """A `tokenizers.Tokenizer` with the special tokens and chat template of the model it came with."""

    def __init__(self, tokenizer: Tokenizer, chat_template: str, special: dict[str, str | None], stop_ids: set[int]):
        if not chat_template:
            raise CheckpointError("The tokenizer has no chat template, so a conversation cannot be laid out for it.")
        self._tokenizer = tokenizer
        self.chat_template = chat_template
        self.special = {k: v for k, v in special.items() if v is not None}  # bos_token, eos_token, ... -> text
        self.eos_id = self.token_id(self.special["eos_token"]) if "eos_token" in self.special else None
        self.stop_ids = set(stop_ids) | ({self.eos_id} if self.eos_id is not None else set())
        self.pad_id = self.token_id(self.special.get("pad_token") or self.special.get("eos_token") or "") or 0
        self._wrapper, self._wrapper_lock = None, threading.Lock()  # transformers' view, for safe_chat_ids

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def token_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Text to ids, added tokens matched (as transformers' `tokenizer(text, add_special_tokens=False)`)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def incremental_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat template applied to `messages` ({"role", "content"} dicts)."""
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(
            conversations=[messages],
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            **self.special,
        )
        return rendered[0]

    def chat_ids(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """The rendered conversation's ids; control tokens written in a message's text count as
        control tokens too (use `safe_chat_ids` for text people typed)."""
        return self.encode(self.render(messages, add_generation_prompt))

    def safe_chat_ids(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """As `chat_ids`, but control tokens inside the messages' text (`<|im_end|>` typed by a
        person) are encoded as plain text: transformers' `sanitize_control_tokens`."""
        with self._wrapper_lock:
            if self._wrapper is None:
                from transformers import PreTrainedTokenizerFast

                self._wrapper = PreTrainedTokenizerFast(
                    tokenizer_object=self._tokenizer.__class__.from_str(self._tokenizer.to_str()),
                    chat_template=self.chat_template,
                    **self.special,
                )
            ids = self._wrapper.apply_chat_template(
                messages,
                add_generation_prompt=add_generation_prompt,
                tokenize=True,
                return_dict=False,
                sanitize_control_tokens=True,
            )
        return list(ids)

    def chat_ids_with_media(
        self, messages: list[dict], counts: list[int], add_generation_prompt: bool = True
    ) -> tuple[list[int], list[int]]:
        """`safe_chat_ids` where the i-th IMAGE_MARK or AUDIO_MARK in the messages' text becomes
        `counts[i]` placeholders: (ids, each one's kind: TEXT, IMAGE or AUDIO of engine.fusion).
        The marks are private-use characters people do not type (callers strip them from typed
        text), each always encoded to the same few ids."""
        from engine.fusion import AUDIO, IMAGE, TEXT

        ids = self.safe_chat_ids(messages, add_generation_prompt)
        marks = [(self.encode(IMAGE_MARK), IMAGE), (self.encode(AUDIO_MARK), AUDIO)]
        wanted = sum(m["content"].count(IMAGE_MARK) + m["content"].count(AUDIO_MARK) for m in messages)
        if wanted != len(counts):
            raise ValueError(f"{wanted} media marks in the messages for {len(counts)} counts")
        out: list[int] = []
        kinds: list[int] = []
        i = found = 0
        while i < len(ids):
            mark, kind = next(((m, k) for m, k in marks if ids[i : i + len(m)] == m), (None, TEXT))
            if mark is None:
                out.append(ids[i])
                kinds.append(TEXT)
                i += 1
                continue
            if found == len(counts):
                raise ValueError(f"more media marks in the ids than the {len(counts)} in the messages")
            out += [self.pad_id] * counts[found]
            kinds += [kind] * counts[found]
            i, found = i + len(mark), found + 1
        if found != wanted:
            raise ValueError(f"{wanted} media marks in the messages, {found} in their ids")
        return out, kinds

    # -- files -----------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write tokenizer.json and tokenizer_config.json (the files `load` and transformers read)."""
        directory = Path(directory)
        self._tokenizer.save(str(directory / TOKENIZER_FILE))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "chat_template": self.chat_template,
            "stop_ids": sorted(self.stop_ids),
            **self.special,
        }
        (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> LMTokenizer:
        """From a Hugging Face folder: tokenizer.json, tokenizer_config.json (or chat_template.jinja)."""
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: a model folder needs {TOKENIZER_FILE}.")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a bare Exception on bad JSON
            raise CheckpointError(f"{path} is corrupt: {error}") from None
        config = _read_json(directory / TOKENIZER_CONFIG_FILE, required=True)
        template = config.get("chat_template")
        if (directory / "chat_template.jinja").is_file():
            template = (directory / "chat_template.jinja").read_text()
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        special = {name: _token_text(config.get(name)) for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
        stop_ids = set(config.get("stop_ids", ()))
        generation = _read_json(directory / GENERATION_CONFIG_FILE, required=False)
        eos = generation.get("eos_token_id")
        stop_ids |= set(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
        try:
            return cls(tokenizer, template or "", special, stop_ids)
        except CheckpointError as error:
            raise CheckpointError(f"{directory}: {error}") from None

    @classmethod
    def from_gguf(cls, metadata: dict, source: str) -> LMTokenizer:
        """From a GGUF file's `tokenizer.*` metadata: byte-level BPE vocabularies (tokenizer.ggml.model gpt2)."""
        kind, pre = metadata.get("tokenizer.ggml.model"), metadata.get("tokenizer.ggml.pre", "default")
        if kind != "gpt2":
            raise CheckpointError(
                f"{source} has a {kind!r} tokenizer; only byte-level BPE ('gpt2') GGUF tokenizers are supported."
            )
        pre_tokenizer = _pre_tokenizer(pre)
        if pre_tokenizer is None:
            raise CheckpointError(f"{source} splits text the {pre!r} way (tokenizer.ggml.pre), which is not supported.")
        tokens = metadata["tokenizer.ggml.tokens"]
        types = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        alphabet = _byte_alphabet()
        letters = set(alphabet.values())
        vocab = {}
        for index, token in enumerate(tokens):  # respell any token not written in the byte alphabet
            spelled = token if set(token) <= letters else "".join(alphabet[b] for b in token.encode())
            vocab.setdefault(spelled, index)
        merges = [tuple(merge.split(" ", 1)) for merge in metadata.get("tokenizer.ggml.merges", ())]
        tokenizer = Tokenizer(models.BPE(vocab, merges, dropout=None, fuse_unk=False))
        tokenizer.pre_tokenizer = pre_tokenizer
        tokenizer.decoder = decoders.ByteLevel()
        # CONTROL (3) tokens are special, USER_DEFINED (4) ones plain added tokens: both stay whole in text
        kinds = list(zip(tokens, types, strict=True))
        tokenizer.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t, kind in kinds if kind == 3 and set(t) <= letters]
        )
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t, kind in kinds if kind == 4])

        def text(key: str) -> str | None:
            index = metadata.get(f"tokenizer.ggml.{key}")
            return tokens[index] if index is not None and 0 <= index < len(tokens) else None

        special = {
            "bos_token": text("bos_token_id"),
            "eos_token": text("eos_token_id"),
            "unk_token": text("unknown_token_id"),
            "pad_token": text("padding_token_id"),
        }
        stop_ids = {
            metadata[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in metadata
        }
        try:
            return cls(tokenizer, metadata.get("tokenizer.chat_template", ""), special, stop_ids)
        except CheckpointError as error:
            raise CheckpointError(f"{source}: {error}") from None


def _token_text(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _read_json(path: Path, required: bool) -> dict:
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path} is missing: a model folder needs {path.name}.")
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {error}).") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object.")
    return data
