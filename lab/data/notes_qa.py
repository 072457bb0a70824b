"""Questions about a picture answered from the offline tools' findings, for the LM's adapters.

    messages, answer = notes_example(random.Random(0))
    # messages: [{"role": "user", "content": "[About picture 1, which I attached (...): ...]\\nWhat do you see?"}]

No picture is drawn: the findings (`engine.observe.ImageObservations`) are sampled directly,
written the way `engine.backends.lm` writes them for the model, and the answer is derived
from them. What the adapters learn is to read those sentences and answer briefly and only
from them; how well the tools read real pictures is measured apart (lab.shapes_eval), and the
whole chain on pictures from lab.data.second_renderer (lab.lm_eval), which this never uses.
"""

from __future__ import annotations

import random

from engine.backends.lm import PICTURE_NOTE
from engine.observe import COLOR_NAMES, ImageObservations

KINDS = ("circle", "square", "triangle", "star", "diamond", "cross", "rectangle", "oval", "pentagon", "hexagon",
         "shape")  # fmt: skip
COLOURS = tuple(COLOR_NAMES) + ("multicoloured",)
WORDS = ("EXIT", "OPEN", "SALE", "STOP", "Hello", "Main Street", "CAFE", "Push", "No parking", "42", "2024", "Menu")
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")

# lab.lm_eval's "unseen wording" questions ("Please list everything drawn in this image.", "Tell me
# the colour of the ...") are deliberately not among these.
DESCRIBE = ("What do you see?", "Describe the picture.", "What's in this image?", "What is in the picture?",
            "Tell me about this image.", "Can you describe what I sent?", "What does the picture show?",
            "what is this", "Look at this. What is it?", "Describe it briefly.", "What's on it?",
            "What can you see in my picture?", "Explain what the image contains.")  # fmt: skip
# questions naming a colour and asking which shape has it
WHICH = ("Which shape is {colour}?", "What is {colour}?", "What shape is the {colour} one?",
         "Which one is {colour}?",
         "What is the {colour} shape?", "Name the {colour} shape.", "Which of the shapes is {colour}?",
         "The {colour} one is which shape?", "What's the {colour} thing?", "Identify the {colour} shape.",
         "what shape is {colour}", "Tell me which shape is {colour}.",
         "Is anything {colour}? Which shape?")  # fmt: skip
COUNT = ("How many shapes are there?", "How many shapes do you see?", "How many things are drawn?",
         "Count the shapes.", "how many shapes", "What is the number of shapes in it?",
         "How many objects are in the drawing?")  # fmt: skip
COLOUR = ("What color is the {kind}?", "What colour is the {kind}?", "Which color is the {kind}?",
          "What's the color of the {kind}?", "the {kind} is what colour?", "Which colour does the {kind} have?",
          "Can you tell me what color the {kind} is?", "Name the colour of the {kind}.",
          "Say what color the {kind} is.", "I'd like to know the {kind}'s colour.", "{kind} colour?",
          "Give me the color of the {kind}, please.", "What colour has the {kind} got?",
          "Do you know which colour the {kind} is?", "colour of the {kind}", "And the {kind}? What color?",
          "Describe the colour of the {kind}.")  # fmt: skip


def _article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _listing(names) -> str:
    words = [_article(n) for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _plural(kind: str) -> str:
    return kind + ("es" if kind.endswith(("s", "x")) else "s")


def sample_findings(rng: random.Random) -> ImageObservations:
    """A drawing (shapes on a plain background) a little over half the time; else a plain picture
    with nothing drawn on it, a page of text, or a photo."""
    tools = ("ocr", "faces", "colors", "shapes")
    text = tuple(rng.sample(WORDS, rng.choice((1, 1, 2)))) if rng.random() < 0.3 else ()
    kind = rng.random()
    if kind < 0.55:
        background = rng.choice(("white", "white", "white", "black", "yellow", "gray", "blue", "pink"))
        shapes = []
        for _ in range(rng.choice((1, 1, 2, 2, 3, 3, 4, 5))):
            colour = rng.choice([c for c in COLOURS if c != background])
            shapes.append(f"{colour} {rng.choice(KINDS)}" + (" outline" if rng.random() < 0.1 else ""))
        colours = (background,) + tuple(dict.fromkeys(s.split()[0] for s in shapes if s.split()[0] in COLOR_NAMES))
        return ImageObservations(text=text, faces=0, colors=colours[:3], shapes=tuple(shapes), tools=tools)
    if kind < 0.65:  # the shapes tool found a plain background and nothing on it (a night sky, a wall)
        colours = tuple(rng.sample(list(COLOR_NAMES), rng.choice((1, 1, 2))))
        return ImageObservations(text=text, faces=0, colors=colours, shapes=(), tools=tools)
    if kind < 0.75:  # a page, a screenshot, a slide: many words read, as OCR reads them
        paper = rng.choice((("white", "black"), ("white", "gray"), ("gray", "white"), ("white",), ("black", "white")))
        return ImageObservations(text=page_lines(rng), faces=0, colors=paper, shapes=None, tools=tools)
    colours = tuple(rng.sample(list(COLOR_NAMES), rng.choice((1, 2, 3, 3))))
    faces = rng.choice((0, 0, 0, 1, 1, 2, 3))
    return ImageObservations(text=text, faces=faces, colors=colours, shapes=None, tools=tools)


PAGE_WORDS = ("the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "on", "this", "by",
              "we", "can", "be", "are", "from", "or", "an", "first", "data", "image", "value", "section", "method",
              "results", "figure", "table", "number", "points", "using", "each", "two", "model", "time", "report",
              "page", "chapter", "example", "shown", "below", "above", "system", "process", "energy", "water",
              "light", "city", "market", "history", "students", "meeting", "project", "budget", "notes", "step",
              "introduction", "summary", "total", "price", "order", "date", "name", "address", "phone",
              "email")  # fmt: skip


def page_lines(rng: random.Random) -> tuple[str, ...]:
    """3-8 lines of 4-9 words, with OCR's slips (two words run together, a stray mark)."""
    lines = []
    for _ in range(rng.randint(3, 8)):
        words = [rng.choice(PAGE_WORDS) for _ in range(rng.randint(4, 9))]
        if rng.random() < 0.5:
            words[0] = words[0].capitalize()
        if rng.random() < 0.25:
            i = rng.randrange(len(words) - 1)
            words[i : i + 2] = [words[i] + words[i + 1]]
        if rng.random() < 0.15:
            words.append(rng.choice((":", ">", "1.", "(2)", "-", "3.4")))
        lines.append(" ".join(words) + rng.choice(("", "", ".", ",")))
    return tuple(lines)


MANY_WORDS = 12  # above this many words, a reply quotes only the start of the text


def quoted_text(findings: ImageObservations) -> str:
    words = " ".join(findings.text).split()
    if len(words) <= MANY_WORDS:
        return f'the text "{" ".join(words)}"'
    return f'a lot of text, starting with "{" ".join(words[:6])}"'


def _shape_parts(findings: ImageObservations) -> list[tuple[str, str]]:
    """[(colour, kind)] with " outline" folded into the kind's description."""
    parts = []
    for name in findings.shapes or ():
        colour, _, kind = name.partition(" ")
        parts.append((colour, kind))
    return parts


def describe(findings: ImageObservations) -> str:
    if findings.shapes:
        n = len(findings.shapes)
        head = f"I see {_listing(findings.shapes)}" if n == 1 else f"I see {n} shapes: {_listing(findings.shapes)}"
        reply = f"{head}, on a {findings.colors[0]} background."
    elif findings.shapes is not None:
        reply = f"It is a plain {findings.colors[0]} picture with nothing drawn on it."
    else:
        verb = "colour is" if len(findings.colors) == 1 else "colours are"
        reply = f"I cannot see the photo itself, but its main {verb} {_and(findings.colors)}."
        if findings.faces:
            reply += (
                f" There {'is one face' if findings.faces == 1 else f'are {NUMBER_WORDS[findings.faces]} faces'} in it."
            )
    if findings.text:
        reply += f" It has {quoted_text(findings)}."
    return reply


def _and(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _asking_for(kind: str, rng: random.Random) -> str:
    """A question about a kind of shape the picture does not hold."""
    return rng.choice((f"What color is the {kind}?", f"Where is the {kind}?", f"Is there a {kind}?"))


def question_and_answer(findings: ImageObservations, rng: random.Random) -> tuple[str, str]:
    """One question about the findings and its grounded answer."""
    parts = _shape_parts(findings)
    options = ["describe", "describe", "text", "faces"]
    if findings.shapes is None:
        options += ["describe", "describe"]  # a photo is mostly described, its face count with it
    else:
        options += ["count", "count", "colour", "colour", "colour", "which", "which", "which", "yes_no", "missing"]
        options += ["count", "count"] if len(parts) == 1 else []  # "one shape" is the count most often missed
    choice = rng.choice(options)
    if choice == "describe":
        return rng.choice(DESCRIBE), describe(findings)
    if choice == "text":
        q = rng.choice(("What does the text say?", "Is there any text?", "What is written on it?", "Can you read it?"))
        if findings.text:
            words = " ".join(findings.text).split()
            if len(words) > MANY_WORDS:
                return q, f"It has {quoted_text(findings)}."
            return q, f'It says "{" ".join(words)}".'
        return q, "I don't find any text in the picture."
    if choice == "faces":
        q = rng.choice(("How many faces are there?", "Are there any people?", "Is anyone in the picture?"))
        if not findings.faces:
            return q, "I don't find any faces in it."
        return q, f"I find {NUMBER_WORDS[findings.faces]} face{'s' if findings.faces > 1 else ''} in it."
    if choice == "count":
        n = len(parts)
        return rng.choice(COUNT), ("There is one shape." if n == 1 else f"There are {NUMBER_WORDS[n]} shapes.")
    if choice == "missing" and not parts:
        kind = rng.choice(KINDS[:-1])
        q = _asking_for(kind, rng)
        return q, f"There is no {kind} in the picture: nothing is drawn on it."
    if choice in ("colour", "which", "yes_no") and not parts:
        return rng.choice(DESCRIBE), describe(findings)
    colour, kind = rng.choice(parts)
    kind = kind.removesuffix(" outline")
    same = [c for c, k in parts if k.removesuffix(" outline") == kind]
    if choice == "colour":
        q = rng.choice(COLOUR).format(kind=kind)
        if len(same) == 1:
            return q, f"The {kind} is {same[0]}."
        return q, f"There are {NUMBER_WORDS[len(same)]} {_plural(kind)}: {_and(same)}."
    if choice == "which":
        q = rng.choice(WHICH).format(colour=colour)
        kinds = [k.removesuffix(" outline") for c, k in parts if c == colour]
        return q, f"The {colour} shape is {_listing(kinds)}." if len(
            kinds
        ) == 1 else f"The {colour} shapes are {_listing(kinds)}."
    if choice == "yes_no":
        if rng.random() < 0.5:
            return f"Is there a {colour} {kind}?", f"Yes, there is a {colour} {kind}."
        other = rng.choice(
            [c for c in COLOR_NAMES if (c, kind) not in [(a, b.removesuffix(" outline")) for a, b in parts]]
        )
        return f"Is there {_article(other + ' ' + kind)}?", f"No. The {kind} is {_and(same)}." if len(
            same
        ) == 1 else f"No. The {_plural(kind)} are {_and(same)}."
    absent = [k for k in KINDS if k not in [b.removesuffix(" outline") for _, b in parts]]
    kind = rng.choice(absent)
    q = _asking_for(kind, rng)
    return q, f"There is no {kind} in the picture. I see {_listing(findings.shapes)}."


def notes_example(rng: random.Random) -> tuple[list[dict], str]:
    """(the conversation up to the question, the answer); one time in four the question is a
    follow-up about the picture shown in the turn before."""
    findings = sample_findings(rng)
    question, answer = question_and_answer(findings, rng)
    note = PICTURE_NOTE.format(index=1, findings=findings.as_sentences())
    if rng.random() < 0.25:
        first, first_answer = question_and_answer(findings, rng)
        return [
            {"role": "user", "content": f"{note}\n{first}"},
            {"role": "assistant", "content": first_answer},
            {"role": "user", "content": question},
        ], answer
    return [{"role": "user", "content": f"{note}\n{question}"}], answer
