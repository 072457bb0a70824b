"""The photos shipped inside installed packages load offline and carry captions."""

from __future__ import annotations

import random

from engine.preprocess import read_image
from lab.data.photos import PHOTOS, available_photos, missing_photos, photo_conversations, photo_variant


def test_every_photo_is_installed_and_loads_offline():
    assert missing_photos() == [], "install scikit-image and matplotlib (see requirements.txt)"
    for photo in available_photos():
        image = read_image(photo.path)  # the engine's own reader: RGB, validated
        assert image.mode == "RGB" and min(image.size) >= 90, photo.name
        assert photo.caption.endswith(".") and len(photo.caption.split()) >= 5
        assert all(q.endswith("?") and a.endswith(".") for q, a in photo.qa)


def test_photo_names_are_unique_and_variants_are_reproducible():
    assert len({p.name for p in PHOTOS}) == len(PHOTOS)
    photo = next(p for p in available_photos() if p.name == "chelsea")
    first = photo_variant(photo, random.Random("a"))
    again = photo_variant(photo, random.Random("a"))
    assert first.tobytes() == again.tobytes()
    assert max(first.size) == 256
    plain = photo_variant(photo, random.Random("a"), augment=False)
    assert plain.size == (256, 170)  # 451x300 scaled down, aspect kept
    talks = photo_conversations(photo, random.Random(0))
    assert talks[0] == ("photo", ((talks[0][1][0][0], photo.caption),))
    assert ("photo_qa", (("What animal is this?", "It is a cat."),)) in talks


def test_photo_talk_passes_on_what_the_tools_saw():
    from engine.observe import ImageObservations

    photo = next(p for p in available_photos() if p.name == "chelsea")
    seen = ImageObservations(text=("OPEN", "24h"), faces=1, colors=("brown", "gray"), tools=("ocr", "faces", "colors"))
    talks = dict(photo_conversations(photo, random.Random(0), seen))
    assert talks["photo"][0][1] == "The main colors are brown and gray. " + photo.caption
    assert talks["photo_colors"][0][1] == "The main colors are brown and gray."
    assert talks["photo_text"][0][1] == "It says OPEN 24h."
    assert talks["photo_faces"][0][1] == "I see one face."
    nothing = dict(photo_conversations(photo, random.Random(0), ImageObservations(faces=0, tools=("ocr", "faces"))))
    assert nothing["photo_text"][0][1] == "I can't read any text in it."
    assert nothing["photo_faces"][0][1] == "I don't see a face."
