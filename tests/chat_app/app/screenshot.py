"""Make assets/screenshot.png: the app in a conversation with the default model (a drawing with
typed questions, then a spoken question and its transcript, and the replies), in headless
Chromium with a fake camera and microphone.

    .venv/bin/python tests/chat_app/app/screenshot.py [--out assets/screenshot.png] [--model DIR]

--model defaults to SmolLM2 with the shipped adapters (`smollm2`). Needs Debian's
chromium, espeak-ng and sox (and fonts-noto-color-emoji for the icons).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[2])]

from app_helpers import Server  # noqa: E402
from test_app_browser import CHROMIUM, FLAGS, greedy_long_replies, open_app, send, wait_until_idle  # noqa: E402


def spoken(text: str, path: Path) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(raw), text], check=True)
    subprocess.run(
        ["sox", "-D", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path), "pad", "0.3", "2"], check=True
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE.parents[2] / "assets" / "screenshot.png"))
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="screenshot-"))
    drawing = HERE.parents[2] / "assets" / "examples" / "drawing.png"
    question = spoken("What is the capital of France?", work / "question.wav")
    server = Server(args.model, work / "data").start()
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=FLAGS + [f"--use-file-for-fake-audio-capture={question}"]
            )
            page = open_app(browser, server)
            for text in ("Hello, how are you?", "Write a haiku about the sea."):  # earlier conversations
                send(page, text)
                wait_until_idle(page)
                page.locator("#new").click()
            greedy_long_replies(page, 128)  # small models answer best greedily
            page.locator("#settings").get_by_text("Settings").first.click()  # folded again
            for replies, (picture, text) in enumerate(
                ((drawing, "What do you see?"), (None, "What color is the triangle?")), start=1
            ):
                if picture is not None:
                    page.locator("#box input[type='file']").set_input_files(str(picture))
                    page.wait_for_selector("#box .thumbnails img", timeout=20_000)
                send(page, text)
                page.wait_for_function(
                    f"document.querySelectorAll(\"#chat [data-testid='bot']\").length >= {replies}", timeout=60_000
                )
                wait_until_idle(page)
            page.locator("#talk").get_by_role("button", name="Record").click()
            time.sleep(3.5)
            page.locator("#talk").get_by_role("button", name="Stop").first.click()
            page.wait_for_function(
                "document.querySelectorAll(\"#chat [data-testid='bot']\").length >= 3", timeout=60_000
            )
            wait_until_idle(page)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=args.out)
            browser.close()
    finally:
        server.stop(kill=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1000} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
