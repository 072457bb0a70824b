"""Errors of the conversation store; each one's str() is a sentence a person can act on.

StoreError               base class: anything the store refuses or cannot do
  NotFound               no such conversation/message/attachment *for this user*
  InvalidInput           a bad argument (role, status, title, settings, user key...)
    AttachmentRejected   media that is empty, too large or not a known image/audio format
  ImportRejected         an export zip that fails validation; nothing was written
  SchemaTooNew           the database was written by a newer version of the app
  MediaRemoved           an attachment whose bytes retention already dropped
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFound(StoreError):
    """A record does not exist, or belongs to another user (the two are indistinguishable)."""

    def __init__(self, what: str, public_id: object) -> None:
        super().__init__(f"No {what} with id {str(public_id)[:80]!r} was found.")
        self.what = what


class InvalidInput(StoreError, ValueError):
    """An argument the store cannot accept (bad role, status, title, settings ...)."""


class AttachmentRejected(InvalidInput):
    """Media that cannot be stored: empty, over the size limit, or an unknown format."""


class ImportRejected(StoreError):
    """An export zip failed validation; the store was left unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The export file was not imported: {reason} Nothing was changed.")
        self.reason = reason


class SchemaTooNew(StoreError):
    """The database's schema version is newer than this code knows."""

    def __init__(self, found: int, known: int, where: str) -> None:
        super().__init__(
            f"The database {where} has schema version {found}, but this version of the app "
            f"only knows versions up to {known}. Upgrade the app (or point it at another "
            "database); the database was left untouched."
        )
        self.found, self.known = found, known


class MediaRemoved(StoreError):
    """An attachment's bytes were dropped by the retention policy; its record remains."""

    def __init__(self, public_id: str) -> None:
        super().__init__(
            f"The media of attachment {public_id!r} was removed by the retention "
            "policy; the message itself is still there."
        )
