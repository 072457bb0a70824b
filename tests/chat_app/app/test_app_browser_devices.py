"""The app in a real browser, as a new user finds it (issue 21): the webcam (Chromium's fake
camera playing a picture of the word HELLO), attaching the same file twice, a phone-sized
window, spoken replies, and where bad input's notice appears.

Headless Chromium (Debian's `chromium`) driven by Playwright, like test_app_browser.py.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from test_app_browser import CHROMIUM, FLAGS, bot_texts, send, user_texts, wait_until_idle

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def hello_png(media_dir):
    """The word HELLO, black on white, left to right: mirrored it reads backwards."""
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", 140)
    except OSError:
        font = ImageFont.load_default(size=140)
    draw.text((40, 160), "HELLO", fill="black", font=font)
    draw.rectangle((0, 0, 120, 60), fill="red")  # top left: which way round the picture is
    path = media_dir / "hello.png"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def hello_camera(hello_png, media_dir):
    """A Y4M video of the HELLO picture for --use-file-for-fake-video-capture."""
    from tests.conftest import run_tool

    path = media_dir / "hello.y4m"
    run_tool(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-loop", "1", "-i", hello_png,
        "-t", "1", "-r", "10", "-pix_fmt", "yuv420p", path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def chromium(hello_camera):
    if not (shutil.which(CHROMIUM) or os.path.isfile(CHROMIUM)):
        pytest.fail(f"Chromium is not at {CHROMIUM}: apt-get install chromium (or set CHROMIUM=/path).", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=FLAGS + [f"--use-file-for-fake-video-capture={hello_camera}"]
        )
        yield browser
        browser.close()


def open_app(chromium, server, viewport=None):
    """A fresh browser profile with the app loaded; its console messages in `page.console`."""
    context = chromium.new_context(
        viewport=viewport or {"width": 1280, "height": 900}, permissions=["camera", "microphone"]
    )
    page = context.new_page()
    page.console = []
    page.on("console", lambda message: page.console.append(f"{message.type}: {message.text}"))
    page.goto(server.url, wait_until="load")
    page.wait_for_selector("#box textarea", timeout=60_000)
    page.wait_for_function(
        "(document.querySelector('#identity') || {}).innerText?.includes('conversations')", timeout=60_000
    )
    return page


def fetch_image(page, selector: str) -> Image.Image:
    import io

    src = page.locator(selector).last.get_attribute("src")
    response = page.request.get(urljoin(page.url, src))
    assert response.ok, f"{src}: {response.status}"
    return Image.open(io.BytesIO(response.body())).convert("L")


def likeness(a: Image.Image, b: Image.Image) -> float:
    """Correlation of two greyscale pictures (b resized to a)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b.resize(a.size), dtype=np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def test_the_webcam_sends_the_picture_the_right_way_round(chromium, server, hello_png):
    """Issue 21.1: the camera shows HELLO; the picture sent reads HELLO, not OLLEH."""
    page = open_app(chromium, server)
    page.locator("#camera").get_by_text("Click to Access Webcam").click()
    page.wait_for_function(
        "(() => { const v = document.querySelector('#camera video'); "
        "return v && v.readyState >= 2 && v.videoWidth > 0; })()",
        timeout=20_000,
    )
    page.locator("#camera button[aria-label='capture photo']").click(timeout=20_000)
    page.wait_for_selector("#box .thumbnails img", timeout=20_000)
    send(page, "What does it say?")
    page.wait_for_selector("#chat [data-testid='user'] img", timeout=30_000)
    wait_until_idle(page)
    sent = fetch_image(page, "#chat [data-testid='user'] img")
    truth = Image.open(hello_png).convert("L")
    mirrored = truth.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    as_is, flipped = likeness(truth, sent), likeness(mirrored, sent)
    assert as_is > 0.9 and as_is > flipped + 0.2, f"sent picture: {as_is:.2f} like HELLO, {flipped:.2f} like OLLEH"
    page.context.close()


def test_the_same_file_attached_again_after_sending_it(chromium, server, image_png):
    """Issue 21.4: attach, send, attach the same file again: it shows and goes with the next message."""
    page = open_app(chromium, server)
    picker = page.locator("#box input[type='file']")
    picker.set_input_files(str(image_png))
    page.wait_for_selector("#box .thumbnails img", timeout=20_000)
    send(page, "first look")
    page.wait_for_selector("#chat [data-testid='user'] img", timeout=30_000)
    wait_until_idle(page)
    assert page.locator("#box .thumbnails img").count() == 0  # the box was emptied
    # a person's file chooser: the same file, picked again
    picker.set_input_files(str(image_png))
    page.wait_for_selector("#box .thumbnails img", timeout=10_000)
    send(page, "second look")
    page.wait_for_function("document.querySelectorAll(\"#chat [data-testid='user'] img\").length >= 2", timeout=30_000)
    page.context.close()


SIDEBAR_COVERS_CHAT_JS = """() => {
    const chat = document.querySelector('#chat').getBoundingClientRect();
    const hit = document.elementFromPoint(chat.left + chat.width / 2, chat.top + chat.height / 2);
    return !!(hit && hit.closest('#sidebar'));
}"""
SIDEBAR_OPEN_JS = "() => document.querySelector('#sidebar').classList.contains('open')"


def chat_uncovered(page, timeout_ms: int = 3_000) -> None:
    """Until the sidebar is closed and has slid away from the chat."""
    page.wait_for_function(f"!({SIDEBAR_OPEN_JS})() && !({SIDEBAR_COVERS_CHAT_JS})()", timeout=timeout_ms)


def open_sidebar(page) -> None:
    page.locator("#sidebar .toggle-button").click()
    page.wait_for_function(SIDEBAR_OPEN_JS, timeout=5_000)


def test_on_a_phone_the_sidebar_leaves_the_chat_visible(chromium, server):
    """Issue 21.5: at 390x844 the sidebar is closed at load, after "New conversation" and after
    picking a conversation; on a wide screen it starts open."""
    page = open_app(chromium, server, PHONE)
    send(page, "a phone's first message")
    page.wait_for_selector("#chat [data-testid='bot']", timeout=30_000)
    wait_until_idle(page)
    page.reload(wait_until="load")
    page.wait_for_selector("#chat [data-testid='user']", timeout=60_000)
    chat_uncovered(page)  # at load

    open_sidebar(page)
    page.wait_for_function(SIDEBAR_COVERS_CHAT_JS, timeout=3_000)  # open, it covers a phone's chat
    page.locator("#new").click()
    chat_uncovered(page)

    open_sidebar(page)
    page.locator("#conversations label").first.click()
    page.wait_for_selector("#chat [data-testid='user']", timeout=20_000)
    chat_uncovered(page)
    page.context.close()

    wide = open_app(chromium, server)
    wide.wait_for_timeout(500)
    assert wide.evaluate(SIDEBAR_OPEN_JS)
    wide.locator("#new").click()
    wide.wait_for_timeout(500)
    assert wide.evaluate(SIDEBAR_OPEN_JS)  # a wide screen has room for both
    wide.context.close()


def test_spoken_replies_play_without_stream_errors(chromium, server):
    """Issue 21.7: with spoken replies on, the console has no HLS error ("No Segments found")."""
    page = open_app(chromium, server)
    page.locator("#settings").get_by_text("Settings").first.click()
    page.locator("#spoken-toggle input").check()
    page.wait_for_selector("#spoken", state="visible", timeout=10_000)
    for text in ("Hello there", "And once more"):
        send(page, text)
        page.wait_for_function(
            f"document.querySelectorAll(\"#chat [data-testid='user']\").length >= {1 + (text != 'Hello there')}",
            timeout=30_000,
        )
        wait_until_idle(page)
        page.wait_for_timeout(3000)  # the player has fetched its playlist and segments
    # (a "bufferStalledError" may come while the next sentence is being made: that is the stream
    # waiting, not a playlist without segments)
    errors = [line for line in page.console if "levelEmptyError" in line or "No Segments" in line]
    assert errors == [], errors
    assert page.evaluate("!!document.querySelector('#spoken audio')")  # the reply was played
    page.context.close()


def test_a_refusal_is_a_notice_outside_the_replies(chromium, server, not_an_image):
    """Issue 21.3: a refused file is said in its own notice, not inside the previous reply's bubble."""
    page = open_app(chromium, server)
    send(page, "How are you?")
    page.wait_for_selector("#chat [data-testid='bot']", timeout=30_000)
    wait_until_idle(page)
    replies = bot_texts(page)
    page.locator("#box input[type='file']").set_input_files(str(not_an_image))
    page.wait_for_selector("#box .thumbnails", timeout=20_000)
    send(page, "read this")
    page.wait_for_function(
        "(document.querySelector('#notice') || {}).innerText?.includes('not a file this app understands')",
        timeout=30_000,
    )
    assert bot_texts(page) == replies  # the model's words are as they were
    assert "not a file" not in page.locator("#chat").inner_text()
    assert user_texts(page) == ["How are you?"]
    send(page, "and now a normal question")  # the next turn clears the notice
    page.wait_for_function("document.querySelectorAll(\"#chat [data-testid='user']\").length == 2", timeout=30_000)
    wait_until_idle(page)
    page.wait_for_function("!(document.querySelector('#notice') || {}).innerText?.trim()", timeout=10_000)
    page.context.close()
