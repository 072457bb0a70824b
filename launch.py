#!/usr/bin/env python3
"""Command-line entry point.

    python launch.py [serve] [--host H] [--port P] [--model M] [--share] [--auth U:P] ...
    python launch.py ask [--image FILE]... [--audio FILE]... [--model DIR] [--json] "message"
    python launch.py voice [--hands-free] [--input-device N] [--list-devices] [--model DIR]

`ask` answers one message with SmolLM2 (or --model SPEC) and streams the reply.
`voice` is the desktop voice mode: talk through the microphone, hear the reply
(chat_app/voice; needs PortAudio, imported by this mode only).
`serve` (the default) is the web app at http://127.0.0.1:7860 (chat_app/serve.py).
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {"serve", "ask", "voice"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description="A multimodal chatbot: text, images and speech.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    from chat_app import serve
    from engine import ask

    serve_parser = commands.add_parser("serve", help="the web app (default)")
    serve.add_arguments(serve_parser)
    serve_parser.set_defaults(handler=serve.run)

    ask_parser = commands.add_parser("ask", help="answer one message and exit")
    ask_parser.add_argument(
        "--model", default=None, help="model spec or directory (default: smollm2 with its adapters)"
    )
    ask_parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 …")
    ask.add_arguments(ask_parser)
    ask_parser.set_defaults(handler=ask.run)

    voice_parser = commands.add_parser("voice", help="talk through the microphone, hear the reply")
    voice_parser.add_argument(
        "--model", default=None, help="model spec or directory (default: smollm2 with its adapters)"
    )
    voice_parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 …")
    from chat_app import voice  # cheap: sounddevice is imported only when the mode runs

    voice.add_arguments(voice_parser)
    voice_parser.set_defaults(handler=voice.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS | {"-h", "--help"}:
        argv.insert(0, "serve")  # `python launch.py --port 8080` serves the web app
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
