"""One error hierarchy for the whole library.

Drivers translate their library's errors (OSError, botocore) at their edge, with
``raise ... from exc``.  ``retryable`` says whether trying again may help.
Messages never contain secrets.
"""

from __future__ import annotations


class ObjStoreError(Exception):
    """Base class of every error objstore raises.  ``attempts``: how many times
    the failed operation was tried (set by the retry policy)."""

    retryable = False
    attempts = 1


class NotFound(ObjStoreError):
    """The object does not exist (and only that: never an outage or a 403)."""


class InvalidId(ObjStoreError, ValueError):
    """A repo id or object id is not well-formed; nothing was touched."""


class ConfigError(ObjStoreError):
    """A configuration is wrong.  The message names the file, section and option."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        section: str | None = None,
        option: str | None = None,
    ) -> None:
        self.file = file
        self.section = section
        self.option = option
        self.reason = message
        where = " ".join(
            part for part in (file, f"[{section}]" if section else None, option) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class BucketNotFound(ConfigError):
    """The configured bucket does not exist on the server."""


class AuthError(ObjStoreError):
    """The server rejected the credentials (wrong key id, wrong secret, expired token)."""


class EncryptionKeyError(ObjStoreError):
    """The SSE-C key is missing or wrong (or, on servers that refuse it, given for an
    object stored without one: SeaweedFS and rclone serve s3 return the bytes)."""


class CorruptObject(ObjStoreError):
    """An object's bytes do not match its id (or cannot be decoded)."""


class BackendUnavailable(ObjStoreError):
    """The backend could not be reached, kept failing after retries, or answered
    in a way objstore cannot use.  ``retryable`` is False for answers another
    attempt will not change (a redirect, a body over the size limit)."""

    retryable = True

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class StorageFull(ObjStoreError):
    """The backend has no space left (disk full, quota exceeded)."""


class PermissionDenied(ObjStoreError):
    """The backend refused access to an existing resource (not a credentials problem)."""


class ServerSideCopyUnsupported(ObjStoreError):
    """The server refused a server-side copy that reading and writing can replace."""
