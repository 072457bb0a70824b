"""Real photos that installed packages ship inside their wheels, with captions written for them.

    for photo in available_photos():            # the ones whose files are present
        photo.path, photo.caption, photo.qa     # Path, "A cup of coffee ...", (("What is ...?", "...."),)

Sources (nothing is downloaded): scikit-image's `skimage/data/` folder, which holds the
legacy sample images inside the wheel (read with Pillow, without importing scikit-image),
and matplotlib's `mpl-data/sample_data/grace_hopper.jpg`. Captions say only what can be
seen; a photo whose package is missing is left out, and `missing_photos()` names it.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from engine import preprocess


@dataclass(frozen=True)
class Photo:
    name: str
    package: str  # the distribution that ships the file
    relative: str  # path inside that package's folder
    caption: str
    qa: tuple[tuple[str, str], ...] = ()
    flip: bool = True  # a mirrored copy is still truthful (no writing in it)

    @property
    def path(self) -> Path | None:
        root = package_dir(self.package)
        return root / self.relative if root else None


SK, MPL = "skimage", "matplotlib"
PHOTOS = (
    Photo(
        "astronaut",
        SK,
        "data/astronaut.png",
        "A smiling astronaut in an orange space suit, with an American flag and a model of the space shuttle "
        "behind her.",
        (("What color is the space suit?", "It is orange."), ("What is this person's job?", "She is an astronaut.")),
    ),
    Photo(
        "camera",
        SK,
        "data/camera.png",
        "A black and white photo of a man in a dark coat looking through a camera on a tripod, on a grassy "
        "field with buildings far behind.",
        (
            ("What is the man doing?", "He is taking a picture with a camera on a tripod."),
            ("Is this photo in color?", "No, it is black and white."),
        ),
    ),
    Photo(
        "chelsea",
        SK,
        "data/chelsea.png",
        "A close-up of the face of a tabby cat with green eyes and white whiskers.",
        (("What animal is this?", "It is a cat."), ("What color are its eyes?", "They are green.")),
    ),
    Photo(
        "coffee",
        SK,
        "data/coffee.png",
        "A cup of coffee on a red saucer with a spoon, on a wooden table.",
        (("What is in the cup?", "Coffee."), ("What color is the saucer?", "It is red.")),
    ),
    Photo(
        "coins",
        SK,
        "data/coins.png",
        "A black and white photo of 24 old coins in four rows on a dark background.",
        (("How many coins are there?", "There are 24 coins."),),
    ),
    Photo(
        "horse",
        SK,
        "data/horse.png",
        "The black silhouette of a standing horse on a white background.",
        (("What animal is this?", "It is a horse."),),
    ),
    Photo(
        "hubble",
        SK,
        "data/hubble_deep_field.jpg",
        "A deep space photo from the Hubble telescope: many small galaxies on a black sky.",
        (("What are the bright spots?", "They are galaxies."),),
    ),
    Photo(
        "moon",
        SK,
        "data/moon.png",
        "A black and white photo of the surface of the moon, with craters.",
        (("Is this photo in color?", "No, it is black and white."),),
    ),
    Photo(
        "motorcycle",
        SK,
        "data/motorcycle_left.png",
        "A red motorcycle parked in a garage, with shelves and boxes behind it.",
        (("What vehicle is this?", "It is a motorcycle."), ("What color is the motorcycle?", "It is red.")),
    ),
    Photo(
        "rocket",
        SK,
        "data/rocket.jpg",
        "A white rocket on its launch pad at dusk, between tall metal towers and bright lights.",
        (("What is standing on the launch pad?", "A rocket."),),
    ),
    Photo(
        "page",
        SK,
        "data/page.png",
        "A photo of a printed page of text with the title Region-based segmentation.",
        (("What is the title of the page?", "Region-based segmentation."),),
        flip=False,
    ),
    Photo(
        "text",
        SK,
        "data/text.png",
        "A black and white photo of handwritten math on a sheet of paper.",
        (("Is the writing printed or handwritten?", "It is handwritten."),),
        flip=False,
    ),
    Photo(
        "retina",
        SK,
        "data/retina.jpg",
        "A photo of the retina at the back of a human eye: an orange-red disc with dark red blood vessels.",
        (("What part of the body is this?", "The retina, at the back of the eye."),),
    ),
    Photo(
        "tissue",
        SK,
        "data/ihc.png",
        "A microscope image of stained tissue: brown cells on a pale blue background.",
        (("Was this taken with a microscope?", "Yes, it is a microscope image."),),
    ),
    Photo(
        "logo",
        SK,
        "data/logo.png",
        "The scikit-image logo: a snake inside a circle, half green and half orange, split by a white S-shaped line.",
        (("What animal is in the logo?", "A snake."),),
        flip=False,
    ),
    Photo(
        "brick",
        SK,
        "data/brick.png",
        "A black and white photo of a brick wall.",
        (("What is the wall made of?", "It is made of bricks."),),
    ),
    Photo("grass", SK, "data/grass.png", "A black and white close-up photo of grass."),
    Photo("gravel", SK, "data/gravel.png", "A black and white close-up photo of gravel."),
    Photo(
        "cell",
        SK,
        "data/cell.png",
        "A black and white microscope image of one round cell, a bright spot on a grey background.",
    ),
    Photo(
        "clock",
        SK,
        "data/clock_motion.png",
        "A black and white photo of a small round clock, so blurred by motion that it is hard to make out.",
        flip=False,
    ),
    Photo(
        "checkerboard",
        SK,
        "data/chessboard_RGB.png",
        "A black and white checkerboard.",
        (("What colors are the squares?", "They are black and white."),),
    ),
    Photo(
        "color_wheel",
        SK,
        "data/color.png",
        "A color wheel on a black background: all the colors of the rainbow around a circle, white in the middle.",
    ),
    Photo(
        "phantom",
        SK,
        "data/phantom.png",
        "The Shepp-Logan phantom, a test picture for medical scans: a grey oval with a white rim and dark "
        "ellipses inside, on black.",
    ),
    Photo(
        "grace_hopper",
        MPL,
        "mpl-data/sample_data/grace_hopper.jpg",
        "Grace Hopper in her navy uniform and cap, in front of an American flag.",
        (("Who is this?", "This is Grace Hopper."), ("What is she wearing?", "A navy uniform and a cap.")),
    ),
)
DESCRIBE = ("What do you see?", "Describe the picture.", "What is in this image?", "What is this a photo of?")


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it; None when absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def available_photos() -> list[Photo]:
    return [photo for photo in PHOTOS if photo.path is not None and photo.path.is_file()]


def missing_photos() -> list[str]:
    """'name (package)' for each photo whose package or file is absent."""
    have = {photo.name for photo in available_photos()}
    return [f"{photo.name} ({photo.package})" for photo in PHOTOS if photo.name not in have]


def photo_variant(photo: Photo, rng: random.Random, max_side: int = 256, augment: bool = True) -> Image.Image:
    """The photo as RGB, at most `max_side` px; with `augment`, a mild crop, flip and brightness change
    that keep the caption true."""
    image = preprocess.read_image(photo.path)
    if augment:
        width, height = image.size
        keep = rng.uniform(0.88, 1.0)
        w, h = round(width * keep), round(height * keep)
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        image = image.crop((left, top, left + w, top + h))
        if photo.flip and rng.random() < 0.5:
            image = ImageOps.mirror(image)
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


# Photos kept out of training: held-out checks that the model tells true things about a new photo.
HELDOUT_PHOTOS = ("astronaut", "coffee", "motorcycle")
COLORS_QUESTIONS = ("What colors do you see?", "What are the main colors?", "Which colours are in the picture?")
TEXT_QUESTIONS = ("Is there any text?", "Can you read anything in the picture?", "What does the text say?")
FACE_QUESTIONS = ("Is there a face in the picture?", "Do you see anyone?", "How many faces do you see?")


def _listing(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def grounded_facts(seen) -> tuple[str, str, str]:
    """Sentences about a picture that follow from what the tools reported (`engine.observe`'s
    ImageObservations): its colours, its text, its faces. These teach the model to pass on what
    the tools saw, which stays true on a photo it has never seen."""
    colors = f"The main colors are {_listing(seen.colors)}." if seen.colors else "It has no single main color."
    text = f"It says {' '.join(seen.text)}." if seen.text else "I can't read any text in it."
    faces = {0: "I don't see a face.", 1: "I see one face."}.get(seen.faces, f"I see {seen.faces} faces.")
    return colors, text, faces


def photo_conversations(photo: Photo, rng: random.Random, seen=None) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(qtype, turns) for one copy of a photo: its caption, each of its own questions and, given
    `seen` (what the observation tools reported about this copy), questions answered from it.
    With `seen`, the description opens with the photo's main colors, then the caption: the opening
    copies the tools' notes, so a description of a photo the model never saw starts with something true."""
    description = photo.caption
    talks = []
    if seen is not None:
        colors, text, faces = grounded_facts(seen)
        description = f"{colors} {description}"
        talks += [
            ("photo_colors", ((rng.choice(COLORS_QUESTIONS), colors),)),
            ("photo_text", ((rng.choice(TEXT_QUESTIONS), text),)),
            ("photo_faces", ((rng.choice(FACE_QUESTIONS), faces),)),
        ]
    talks.insert(0, ("photo", ((rng.choice(DESCRIBE), description),)))
    talks += [("photo_qa", ((question, answer),)) for question, answer in photo.qa]
    return talks
