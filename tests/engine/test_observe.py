"""Offline tools (PP-OCRv4, OpenCV faces, colour names) and how their findings reach the model."""

from PIL import Image, ImageDraw, ImageFont
from tiny_models import tiny_backend

from engine.observe import dominant_colors, nearest_color_name, observe_image
from engine.prompt import build_prompt
from engine.types import Conversation, ReplyInfo, Turn


def word_image(word="HELLO", background=(245, 245, 245)):
    image = Image.new("RGB", (320, 140), background)
    ImageDraw.Draw(image).text((30, 35), word, fill=(15, 15, 15), font=ImageFont.load_default(size=56))
    return image


def test_ocr_reads_a_rendered_word():
    assert observe_image(word_image("ZEBRA 42"), ("ocr",)).text == ("ZEBRA 42",)


def test_ocr_finds_nothing_in_a_plain_picture():
    observations = observe_image(Image.new("RGB", (200, 200), (30, 80, 220)), ("ocr", "colors"))
    assert observations.text == () and observations.colors == ("blue",)
    assert observations.as_text() == "text: none; colors: blue"


def test_dominant_colors_are_named_most_covering_first():
    image = Image.new("RGB", (100, 100), (220, 30, 30))
    ImageDraw.Draw(image).rectangle((0, 0, 99, 29), fill=(40, 170, 60))
    assert dominant_colors(image) == ("red", "green")
    assert nearest_color_name((250, 250, 240)) == "white"


def test_no_faces_in_a_drawing_of_shapes(image_png):
    from engine.preprocess import read_image

    assert observe_image(read_image(image_png), ("faces",)).faces == 0


def test_observations_are_added_to_the_user_turn_and_reported(tmp_path):
    path = tmp_path / "word.png"
    word_image("TIGER").save(path)
    backend = tiny_backend(observations=("ocr", "colors"))
    conversation = Conversation("", [Turn("user", "What does it say?", images=[path])])
    prompt = build_prompt(conversation, backend.tokenizer, backend.config)
    assert prompt.observations == ["image 1: text: TIGER; colors: white"]
    assert "[image 1: text: TIGER; colors: white]\nWhat does it say?" in backend.tokenizer.decode(prompt.ids)
    info = ReplyInfo()
    list(backend.stream(conversation, info=info))
    assert info.observations == prompt.observations
