"""What the web app is allowed to do, in one frozen dataclass (like `GenerationConfig`).

    settings = Settings(data_dir=default_data_dir())
    settings = Settings(data_dir=Path("data"), guest=GuestLimits(turns_per_hour=20))

`guest` is set when the app is shared without a password (`--share` without `--auth`):
then every visitor gets those limits. Nothing here imports gradio or torch.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MiB = 2**20
APP_NAME = "multimodal-chat"


@dataclass(frozen=True)
class GuestLimits:
    """Limits for anonymous visitors of a shared link."""

    turns_per_hour: int = 30  # messages (send, regenerate, edit) per visitor per hour
    max_upload_mb: float = 8.0  # per file


@dataclass(frozen=True)
class Settings:
    data_dir: Path  # the database (chat.db) and media live here
    title: str = "Multimodal chat"
    max_upload_mb: float = 50.0  # per file; larger files are refused with a message in the chat
    max_files_per_turn: int = 8  # images + audio clips in one message
    max_message_chars: int = 16_000  # longer messages are refused with a message in the chat
    concurrency: int = 2  # replies generated at once; the others wait in the queue
    guest: GuestLimits | None = None  # limits for everyone (shared link without a password)
    auth: bool = False  # people log in; their username is their key to the history
    # defaults of the settings panel
    system_prompt: str = ""
    temperature: float | None = None  # None: the model's own (engine.backends.base.Sampling), else 0.7
    top_p: float | None = None  # None: the model's own, else 0.95
    max_new_tokens: int = 256
    spoken_replies: bool = False
    checkpoint_every_s: float = 1.0  # how often a streaming reply's partial text is saved
    extra: dict = field(default_factory=dict, compare=False)  # room for deployments

    def __post_init__(self) -> None:
        problems = []
        if self.max_upload_mb <= 0:
            problems.append("max upload size must be positive")
        if self.concurrency < 1:
            problems.append("concurrency must be at least 1")
        if self.max_message_chars < 1:
            problems.append("max message length must be at least 1")
        if self.guest and self.guest.turns_per_hour < 1:
            problems.append("guest turns per hour must be at least 1")
        if problems:
            raise ValueError("Invalid app settings: " + "; ".join(problems) + ".")
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())

    @property
    def upload_limit_bytes(self) -> int:
        """What one file may weigh in a message (the guest limit when it is smaller)."""
        limit = self.max_upload_mb
        if self.guest:
            limit = min(limit, self.guest.max_upload_mb)
        return int(limit * MiB)

    @property
    def transport_limit_bytes(self) -> int:
        """What the server receives at all: above the message limit, so that a file a bit too
        large gets a clear message in the chat; far larger ones are refused at upload."""
        return max(2 * int(self.max_upload_mb * MiB), int(self.max_upload_mb * MiB) + 8 * MiB)

    @property
    def view_dir(self) -> Path:
        """Copies of stored media with a file extension, for the browser to display."""
        return self.data_dir / "view"

    @property
    def scratch_dir(self) -> Path:
        """Short-lived files: exports, undone attachments, hands-free recordings (a day at most)."""
        return self.data_dir / "tmp"

    def scratch(self, prefix: str) -> Path:
        """A new private folder in `scratch_dir`."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch_dir))

    def purge_scratch(self, max_age_s: float = 24 * 3600) -> None:
        """Delete what is older than `max_age_s` in `scratch_dir` (files and their folders)."""
        if not self.scratch_dir.is_dir():
            return
        limit = time.time() - max_age_s
        for entry in self.scratch_dir.iterdir():
            try:
                if entry.stat().st_mtime < limit:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            except OSError:
                pass


def default_data_dir() -> Path:
    """A per-user data folder: ~/.local/share/multimodal-chat (XDG), the macOS and Windows
    equivalents elsewhere."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_NAME


def parse_auth(pairs: list[str], auth_file: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """`user:password` strings (and the lines of `auth_file`, `#` comments allowed) as pairs.

    Raises ValueError with a sentence for people when one is malformed.
    """
    entries = [(pair, "--auth") for pair in pairs]
    if auth_file:
        path = Path(auth_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ValueError(f"Cannot read the auth file {path}: {error.strerror or error}.") from None
        entries += [
            (line.strip(), f"{path.name} line {number}")
            for number, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#")
        ]
    users: dict[str, str] = {}
    for entry, where in entries:
        user, colon, password = entry.partition(":")
        if not colon or not user.strip() or not password:
            raise ValueError(f"Bad login in {where}: write it as user:password.")
        users[user.strip()] = password
    return list(users.items())
