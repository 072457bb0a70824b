"""Make assets/screenshot.png: the app mid-conversation (a picture, a spoken question, a reply
streaming), in headless Chromium with a fake camera and microphone.

    .venv/bin/python tests/app/screenshot.py [--out assets/screenshot.png] [--model DIR]

Without --model it saves a tiny random checkpoint first, so the replies are gibberish. Needs
Debian's chromium, espeak-ng and sox (and fonts-noto-color-emoji for the icons).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from app_helpers import Server  # noqa: E402
from test_app_browser import CHROMIUM, FLAGS, greedy_long_replies, open_app, wait_until_idle  # noqa: E402


def scene(path: Path) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 60, 150, 180), fill=(220, 30, 30))
    draw.rectangle((180, 70, 290, 180), fill=(30, 80, 220))
    image.save(path)
    return path


def spoken(text: str, path: Path) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
    subprocess.run(["sox", "-D", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path), "pad", "0.3", "2"],
                   check=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE.parents[1] / "assets" / "screenshot.png"))
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="screenshot-"))
    model = args.model
    if model is None:
        from engine.loading import save_checkpoint
        from tests.tiny_models import tiny_model, tiny_tokenizer

        model = save_checkpoint(work / "tiny-random", tiny_model(0, max_seq_len=2048, observations=("colors",)),
                                tiny_tokenizer())
    picture = scene(work / "shapes.png")
    question = spoken("What shapes and colours do you see in this picture?", work / "question.wav")
    server = Server(model, work / "data").start()
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=FLAGS + [f"--use-file-for-fake-audio-capture={question}"])
            page = open_app(browser, server)
            for text in ("Plan a picnic for Saturday", "Translate 'good morning' into French"):
                page.locator("#box textarea").fill(text)
                page.locator("#box textarea").press("Enter")
                wait_until_idle(page)
                page.locator("#new").click()
            greedy_long_replies(page, 800)  # a long reply, to catch it mid-stream
            page.locator("#settings").get_by_text("Settings").first.click()  # folded again
            page.locator("#box input[type='file']").set_input_files(str(picture))
            page.wait_for_selector("#box .thumbnails img", timeout=20_000)
            page.locator("#talk").get_by_role("button", name="Record").click()
            time.sleep(4.5)
            page.locator("#talk").get_by_role("button", name="Stop").first.click()
            page.wait_for_function("(() => { const b = document.querySelectorAll(\"#chat [data-testid='bot']\"); "
                                   "return b.length && b[b.length - 1].innerText.length > 140; })()", timeout=60_000)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=args.out)
            wait_until_idle(page)
            browser.close()
    finally:
        server.stop(kill=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1000} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
