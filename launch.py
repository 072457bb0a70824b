#!/usr/bin/env python3
"""Command-line entry point.

    python launch.py ask [--image FILE]... [--audio FILE]... [--model DIR] [--json] "message"
    python launch.py voice [--hands-free] [--input-device N] [--list-devices] [--model DIR]

`ask` answers one message with the built-in model (or --model DIR) and streams the reply.
`voice` is the desktop voice mode: talk through the microphone, hear the reply
(chat_app/voice; needs PortAudio, imported by this mode only).
The web app (`serve`) is added by its own issue.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description="A multimodal chatbot: text, images and speech.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    from engine import ask

    ask_parser = commands.add_parser("ask", help="answer one message and exit")
    ask_parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ask_parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 …")
    ask.add_arguments(ask_parser)
    ask_parser.set_defaults(handler=ask.run)

    voice_parser = commands.add_parser("voice", help="talk through the microphone, hear the reply")
    voice_parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    voice_parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 …")
    from chat_app import voice  # cheap: sounddevice is imported only when the mode runs

    voice.add_arguments(voice_parser)
    voice_parser.set_defaults(handler=voice.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        print("\nThe web app (`serve`) is not part of this version yet; use `ask` for now.", file=sys.stderr)
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
