"""Tiny random-weight transformers models saved as real model folders (no downloads).

    save_tiny_llama(folder)    LlamaForCausalLM + a byte-level BPE tokenizer with a Jinja chat template
    save_tiny_llava(folder)    LlavaForConditionalGeneration (CLIP vision tower + Llama) + LlavaProcessor
    save_tiny_whisper(folder)  WhisperForConditionalGeneration + WhisperProcessor; it always says " the"

Each writes config.json, model.safetensors, generation_config.json and the tokenizer/processor
files that `from_pretrained` reads, so the tests load them by path through the real code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    "hello there, how are you today?",
    "the quick brown fox jumps over the lazy dog",
    "What color is the circle? The circle is red.",
    "I am fine, thank you very much.",
] * 20
CHAT_SPECIAL = ["<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<image>"]
# Content is a string (text models) or a list of parts (vision models); images become <image>.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WHISPER_SPECIAL = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|transcribe|>",
    "<|translate|>",
    "<|notimestamps|>",
]
WHISPER_WORD = " the"


def _bpe(special: list[str], vocab_size: int = 320) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def chat_tokenizer(chat_template: str | None = CHAT_TEMPLATE, image_token: bool = False):
    from transformers import PreTrainedTokenizerFast

    extra = {"extra_special_tokens": {"image_token": "<image>"}} if image_token else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=_bpe(CHAT_SPECIAL),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        chat_template=chat_template,
        **extra,
    )


def _llama_config(tokenizer, **overrides):
    from transformers import LlamaConfig

    options = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaConfig(**{**options, **overrides})


def save_tiny_llama(folder: Path, seed: int = 0, chat_template: str | None = CHAT_TEMPLATE, **overrides) -> Path:
    from transformers import LlamaForCausalLM

    tokenizer = chat_tokenizer(chat_template)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_llama_config(tokenizer, **overrides))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def save_tiny_llava(folder: Path, seed: int = 0) -> Path:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = chat_tokenizer(CHAT_TEMPLATE, image_token=True)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llama_config(tokenizer, max_position_embeddings=512),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|end|>")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def save_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """A Whisper whose decoder ignores its input and always predicts WHISPER_WORD (up to its length limit)."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    bpe = json.loads(_bpe(WHISPER_SPECIAL).to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in bpe["merges"]]
    tokenizer = WhisperTokenizer(vocab=bpe["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": WHISPER_SPECIAL[1:]})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in WHISPER_SPECIAL}
    features = WhisperFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, chunk_length=30)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=16,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=16,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    word = tokenizer.encode(WHISPER_WORD, add_special_tokens=False)
    assert len(word) == 1, f"{WHISPER_WORD!r} must be one token of the tiny vocabulary"
    with torch.no_grad():  # hidden state = a constant pointing at the word's (tied) embedding
        embedding = model.model.decoder.embed_tokens.weight
        embedding[word[0]] = torch.randn(32) * 4
        model.model.decoder.layer_norm.weight.zero_()
        model.model.decoder.layer_norm.bias.copy_(embedding[word[0]])
    model.generation_config.no_timestamps_token_id = ids["<|notimestamps|>"]
    model.generation_config.is_multilingual = False
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    return Path(folder)
