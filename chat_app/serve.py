"""`python launch.py serve` (or `python -m chat_app.serve`): the web app on http://127.0.0.1:7860.

    python -m chat_app.serve --model DIR --data-dir data --port 7860
    python -m chat_app.serve --share --auth alice:secret --auth bob:hunter2

Loads the model once (the built-in one unless --model), opens the conversation store in
--data-dir and serves the Gradio app. Problems a person can fix (no model, a bad --auth,
a busy port, a database from a newer version) print one line and exit with status 2.
`--share` asks Gradio for a public link; when the tunnel cannot be made (offline, the frpc
binary blocked) it says so in one line and keeps serving locally. `--share` without a
password warns that anyone with the link can use the app, and applies guest limits.
The OpenAI-compatible API (chat_app/api.py) is served beside the app at /v1, behind the same
logins (not for guests of a shared link without a password; `--no-api` turns it off).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading

from chat_app.settings import GuestLimits, Settings, default_data_dir, parse_auth

SHARE_TIMEOUT_S = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR", help=f"database and media (default: {default_data_dir()})"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="MODEL",
        help="a checkpoint folder, or any spec engine.backends.load_backend takes (default: "
        "smollm2, then the from-scratch built-in model); repeat to offer several in the settings panel",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 …")
    parser.add_argument("--share", action="store_true", help="also make a temporary public Gradio link")
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="require a login (repeatable); each user sees only their own conversations",
    )
    parser.add_argument("--auth-file", default=None, metavar="FILE", help="logins, one user:password a line")
    parser.add_argument(
        "--max-upload-mb", type=float, default=50.0, metavar="MB", help="largest file a message may carry (default 50)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="replies generated at once; the others wait in the queue (default: as many as the "
        "models decode in one batch, 32 for smollm2 on a CPU; 2 for models without batching)",
    )
    parser.add_argument(
        "--guest-turns-per-hour",
        type=int,
        default=30,
        metavar="N",
        help="messages per hour per visitor of a --share link without --auth (default 30)",
    )
    parser.add_argument(
        "--guest-max-upload-mb",
        type=float,
        default=8.0,
        metavar="MB",
        help="largest file for visitors of a --share link without --auth (default 8)",
    )
    parser.add_argument(
        "--no-api",
        action="store_true",
        help="do not serve the OpenAI-compatible /v1 API beside the app (it is never served "
        "to guests of a --share link without --auth)",
    )
    parser.add_argument("--system-prompt", default="", metavar="TEXT", help="the settings panel's default")
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, metavar="N", help="the settings panel's default (256)"
    )


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _open_share_link(demo) -> None:
    """Ask Gradio's share server for a tunnel; one line either way."""
    from gradio import networking

    result: dict = {}

    def attempt() -> None:
        try:
            result["url"] = networking.setup_tunnel(
                local_host=demo.server_name,
                local_port=demo.server_port,
                share_token=demo.share_token,
                share_server_address=None,
                share_server_tls_certificate=None,
            )
        except Exception as error:  # noqa: BLE001 - offline, blocked binary, refused: all the same to people
            result["error"] = error

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(SHARE_TIMEOUT_S)
    url = result.get("url")
    if url:
        demo.share_url = url.replace("http://", "https://", 1)
        demo.share = True
        print(f"Public link: {demo.share_url} (temporary; anyone with it can open the app)", flush=True)
        return
    error = result.get("error")
    if error is None:
        reason = f"no answer within {SHARE_TIMEOUT_S} s"
    else:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if error.__cause__ is not None:
            reason += f" {type(error.__cause__).__name__}: {str(error.__cause__).strip()[:100]}"
    print(f"Share link unavailable ({reason[:160]}); the app is only served locally at {demo.local_url}", flush=True)


def _mount_api(demo, backends: dict, logins: list[tuple[str, str]]) -> None:
    """The OpenAI-compatible /v1 routes (chat_app/api.py) on the same server, same logins."""
    try:
        from chat_app.api import build_api_router
    except ImportError as error:
        print(f"The /v1 API is not available ({error}).", file=sys.stderr)
        return
    accounts = dict(logins)
    check = (lambda user, password: accounts.get(user) == password) if accounts else None
    demo.app.include_router(build_api_router(lambda: backends, authenticate=check))
    print(f"OpenAI-compatible API at {demo.local_url}v1", flush=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _warm_up_speech() -> None:
    def load() -> None:
        try:
            from engine.speech.asr import get_transcriber

            get_transcriber()
        except Exception:  # noqa: BLE001 - reported when a voice message arrives
            pass

    threading.Thread(target=load, daemon=True, name="asr-warm-up").start()


def run(args: argparse.Namespace) -> int:
    """Serve the app until interrupted; returns the process exit status."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        logins = parse_auth(args.auth, args.auth_file)
    except ValueError as error:
        return _fail(str(error))
    guest = None
    if args.share and not logins:
        guest = GuestLimits(turns_per_hour=args.guest_turns_per_hour, max_upload_mb=args.guest_max_upload_mb)
    try:
        settings = Settings(
            data_dir=args.data_dir or default_data_dir(),
            max_upload_mb=args.max_upload_mb,
            concurrency=2 if args.concurrency is None else args.concurrency,
            guest=guest,
            auth=bool(logins),
            system_prompt=args.system_prompt,
            max_new_tokens=args.max_new_tokens,
        )
    except ValueError as error:
        return _fail(str(error))

    from engine.backends import load_backend  # imports torch: after the cheap checks
    from engine.cpu_threads import reserve_cores_for_decoding
    from engine.types import EngineError

    reserve_cores_for_decoding(args.device)  # the schedulers' threads decode on every core

    backends = {}
    from engine.backends import default_specs

    for spec in args.model or default_specs():
        print(f"Loading model {spec or 'builtin'} (device {args.device})…", file=sys.stderr, flush=True)
        try:
            backend = load_backend(spec, device=args.device)
        except EngineError as error:
            return _fail(str(error))
        backends[backend.name] = backend

    if args.concurrency is None:  # the queue holds only what exceeds the models' batches
        parallel = max(getattr(b.capabilities, "parallel_replies", 1) for b in backends.values())
        settings = dataclasses.replace(settings, concurrency=max(2, parallel))

    from chat_app.store import ConversationStore, StoreError

    try:
        store = ConversationStore(settings.data_dir)
    except (StoreError, OSError) as error:
        return _fail(f"cannot open the conversation store in {settings.data_dir}: {error}")
    if store.recovered:
        print(f"{store.recovered} reply(ies) cut off by the last shutdown are marked interrupted.", file=sys.stderr)

    from chat_app.app import build_app, launch_options, queue_options  # imports gradio: after the model

    demo = build_app(backends, store, settings)
    demo.queue(**queue_options(settings))
    try:
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            auth=logins or None,
            auth_message="Log in to see your conversations." if logins else None,
            prevent_thread_lock=True,
            share=False,
            quiet=True,
            **launch_options(settings),
        )
    except OSError as error:
        store.close()
        reason = str(error).split(". ")[0].rstrip(".")
        return _fail(f"cannot serve on {args.host}:{args.port} ({reason}); choose another --port.")
    print(f"Serving {', '.join(backends)} at {demo.local_url} (data in {settings.data_dir})", flush=True)
    if not args.no_api and guest is None:
        _mount_api(demo, backends, logins)
    _warm_up_speech()
    if args.share:
        if not logins:
            turns = f"{guest.turns_per_hour} message{'s' if guest.turns_per_hour != 1 else ''}"
            print(
                f"Warning: --share without --auth: anyone with the link can use this app (guest limits: "
                f"{turns} an hour, {min(guest.max_upload_mb, args.max_upload_mb):g} MB per file). "
                "Add --auth USER:PASSWORD to require a login.",
                flush=True,
            )
        _open_share_link(demo)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat_app.serve", description="Serve the web chat app.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
