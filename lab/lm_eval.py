"""The SmolLM2 chat model as a person would judge it: pictures it never saw, questions it was not
trained on, and whether its knowledge and conversation are intact.

    python -m lab.lm_eval                     # ~15 min on 2 CPU cores
    python -m lab.lm_eval --scenes 20 --skip-base
    python -m lab.lm_eval --scenes-only --no-vision   # the tools' findings alone, no image tokens

Prints, for the app's SmolLM2 backend (adapters merged) and, where it applies, the base model:
1. Scenes from lab.data.second_renderer ("plain": white 4:3 canvas, 1-3 filled shapes; "hard":
   gradients, textures, photos, 1-5 shapes, rotation, outlines, noise; never used in training,
   drawn by another library than the training data's), through the real
   chain: file → offline tools (OCR, faces, colours, shapes) → prompt → reply. "What do you
   see?" passes when every shape is named with its colour; colour, shape and count questions
   pass when the reply contains the right word. Phrasings the adapters' data never used are
   scored apart ("unseen wording").
2. Photos (lab.data.photos): "What do you see?" — the reply is printed, and counted as
   ungrounded when it names a colour the tools did not report, a shape the tool did not find,
   or another number of faces than the face detector's (`--photos-only`: just this part).
3. Factual QA (lab.data.factual_qa, 48 questions, contains-match, greedy): the base model
   through transformers' `generate` and ours through the engine, same prompt and decoding.
4. Held-out chit-chat (chatterbot-corpus's held-out dialogues): mean cross-entropy per token
   of the corpus's reply given the opener, for the base model and ours (lower: closer).
"""

from __future__ import annotations

import argparse
import random
import re

import torch
from tqdm import tqdm

from engine.types import Conversation, GenerationConfig, Turn

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
COLOUR_WORDS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray",
                "grey", "cyan")  # fmt: skip
SHAPE_WORDS = ("circle", "square", "triangle", "star", "diamond", "cross", "rectangle", "oval", "pentagon", "hexagon")
GREEDY = GenerationConfig(temperature=0, max_new_tokens=80)


def reply(backend, text: str, images=()) -> str:
    conversation = Conversation(turns=[Turn(role="user", text=text, images=list(images))])
    return "".join(backend.stream(conversation, GREEDY)).strip()


def _has(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}s?\b", text.lower()) is not None


def _count_ok(text: str, n: int) -> bool:
    said = {i for i, w in enumerate(NUMBER_WORDS) if _has(text, w)} | {int(d) for d in re.findall(r"\b\d\b", text)}
    return said == {n}


def evaluate_scenes(backend, scenes: int, folder, setting: str = "plain") -> dict[str, float]:
    from lab.data.second_renderer import second_scene

    scores = {k: [] for k in ("describe", "colour", "shape", "count", "unseen describe", "unseen colour")}
    misses: list[str] = []  # a few failures, printed: what a person would look at first
    for index in tqdm(range(scenes), desc=f"second-renderer {setting} scenes"):
        scene, image = second_scene(random.Random(f"lm-eval/{index}"), setting)
        path = folder / f"scene-{index}.png"
        image.save(path)
        shapes = [(s.color, s.kind) for s in scene.shapes]
        kinds = [k for _, k in shapes]
        colour, kind = next(((c, k) for c, k in shapes if kinds.count(k) == 1), shapes[0])
        described = reply(backend, "What do you see?", [path])
        scores["describe"].append(all(f"{c} {k}" in described.lower() for c, k in shapes))
        scores["colour"].append(_has(reply(backend, f"What color is the {kind}?", [path]), colour))
        said = reply(backend, f"Which shape is {colour}?", [path])
        scores["shape"].append(_has(said, kind))
        if not scores["shape"][-1] and len(misses) < 5:
            misses.append(f"{scene_words(shapes)}: Which shape is {colour}? -> {said!r}")
        scores["count"].append(_count_ok(reply(backend, "How many shapes are there?", [path]), len(shapes)))
        unseen = reply(backend, "Please list everything drawn in this image.", [path])
        scores["unseen describe"].append(all(f"{c} {k}" in unseen.lower() for c, k in shapes))
        said = reply(backend, f"Tell me the colour of the {kind}.", [path])
        scores["unseen colour"].append(_has(said, colour))
        if not scores["unseen colour"][-1] and len(misses) < 10:
            misses.append(f"{scene_words(shapes)}: Tell me the colour of the {kind}. -> {said!r}")
    for miss in misses:
        print("  missed: " + miss)
    return {k: sum(v) / len(v) for k, v in scores.items()}


def scene_words(shapes) -> str:
    return ", ".join(f"{c} {k}" for c, k in shapes)


def faces_said(text: str) -> int | None:
    """How many faces a reply says there are ("no faces", "one face", "3 faces"); None if it does not say."""
    text = text.lower()
    if re.search(r"\b(no|any|zero) (faces?|people|one)\b|\bnobody\b|\bno one\b", text):
        return 0
    found = re.search(r"\b(" + "|".join(NUMBER_WORDS) + r"|\d+) (faces?|people|persons?)\b", text)
    if found is None:
        return None
    word = found.group(1)
    return int(word) if word.isdigit() else NUMBER_WORDS.index(word)


def evaluate_photos(backend) -> tuple[int, list[tuple[str, str]]]:
    from PIL import Image

    from engine.observe import observe_image
    from lab.data.photos import available_photos

    ungrounded, shown = 0, []
    for photo in tqdm(available_photos(), desc="photos"):
        seen = observe_image(Image.open(photo.path).convert("RGB"))
        said = reply(backend, "What do you see?", [photo.path])
        allowed = set(seen.colors) | {w for s in (seen.shapes or ()) for w in s.split()}
        allowed |= {"grey"} if "gray" in allowed else set()
        wrong_words = any(_has(said, w) and w not in allowed for w in COLOUR_WORDS + SHAPE_WORDS)
        faces = faces_said(said)
        ungrounded += wrong_words or (faces is not None and faces != seen.faces)
        shown.append((photo.name, said))
    return ungrounded, shown


def factual_score(answer) -> float:
    from lab.data.factual_qa import FACTUAL_QA

    right = 0
    for question, references in tqdm(FACTUAL_QA, desc="factual QA"):
        said = answer(question).lower()
        right += any(ref in said for ref in references)
    return right / len(FACTUAL_QA)


def transformers_answerer():
    """The base SmolLM2 through transformers (dequantized GGUF), greedy, its own chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.llm.lm import locate_smollm2

    path = locate_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()

    def answer(question: str) -> str:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=GREEDY.max_new_tokens, do_sample=False)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    return answer


@torch.inference_mode()
def chat_cross_entropy(model, tokenizer, pairs) -> float:
    """Mean cross-entropy per token of each reference reply given its opener."""
    from lab.train_notes import encode, loss_of

    losses = [float(loss_of(model, [encode(tokenizer, [{"role": "user", "content": q}], a)], tokenizer.pad_id,
                            model.norm.weight.device)) for q, a in pairs]  # fmt: skip
    return sum(losses) / len(losses)


def heldout_chat_pairs(limit: int = 60) -> list[tuple[str, str]]:
    from lab.data.chitchat import load_dialogues, split_dialogues

    _, heldout = split_dialogues(load_dialogues())
    return [d.pairs[0] for d in heldout if d.pairs][:limit]


def main(argv: list[str] | None = None) -> int:
    import tempfile
    from pathlib import Path

    from engine.backends.lm import LMBackend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=50)
    parser.add_argument("--skip-base", action="store_true", help="do not load the base model through transformers")
    parser.add_argument("--adapters", default=None, help="adapter folder (default: the shipped one)")
    parser.add_argument("--no-vision", action="store_true", help="the tools' findings only, no image tokens")
    parser.add_argument("--settings", default="plain,hard", help="second-renderer settings to score")
    parser.add_argument("--scenes-only", action="store_true", help="skip photos, factual QA and chit-chat")
    parser.add_argument("--photos-only", action="store_true", help="only the photos, every reply printed")
    args = parser.parse_args(argv)
    kwargs = {"adapters": args.adapters} if args.adapters else {}
    ours = LMBackend.smollm2("cpu", transcriber=None, encoders=not args.no_vision, **kwargs)
    print(f"model: {ours.name}")
    for setting in [] if args.photos_only else args.settings.split(","):
        with tempfile.TemporaryDirectory() as folder:
            scores = evaluate_scenes(ours, args.scenes, Path(folder), setting)
        print(
            f"second-renderer {setting} scenes ({args.scenes}): " + ", ".join(f"{k} {v:.0%}" for k, v in scores.items())
        )
    if args.scenes_only:
        return 0
    ungrounded, shown = evaluate_photos(ours)
    print(
        f"photos: {ungrounded} of {len(shown)} replies name a colour or shape the tools did not report, "
        "or another number of faces"
    )
    for name, said in shown[: None if args.photos_only else 6]:
        print(f"  {name}: {said[:160]!r}")
    if args.photos_only:
        return 0
    ours_factual = factual_score(lambda q: reply(ours, q))
    print(f"factual QA, ours (engine; text-only chats use the base weights): {ours_factual:.1%}")
    if not args.skip_base:
        print(f"factual QA, base SmolLM2 (transformers generate): {factual_score(transformers_answerer()):.1%}")
    pairs = heldout_chat_pairs()
    base_loss = chat_cross_entropy(ours.model, ours.tokenizer, pairs)
    adapted_loss = chat_cross_entropy(ours.media_model, ours.tokenizer, pairs)
    print(
        f"held-out chit-chat cross-entropy ({len(pairs)} replies): base weights (what answers text) {base_loss:.3f}, "
        f"adapted weights (what answers about media) {adapted_loss:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
