"""Every error the service raises on purpose, each with a message that says what to do next.

The whole tree, ``(exit_code / http_status)``; the errors only the HTTP layer raises are
defined in the ``serving`` module named at the end of their line::

    RagError                        an expected failure                  (1 / 500)
    ├── ConfigError                 bad profile, key or value            (2 / 500)
    ├── AssetError                  vocabulary or local model missing    (3 / 503)
    ├── IngestError                 one file could not be ingested       (4 / 422)
    │   └── UnsupportedFileError    the file type is not supported       (4 / 415)
    ├── StoreError                  the index or state database fails    (5 / 503)
    │   ├── EmbedderMismatchError   collection built with another model  (5 / 409)
    │   ├── IndexBusyError          another writer holds the index       (5 / 409)
    │   ├── NoCollectionError       nothing was ingested yet             (5 / 503)
    │   ├── StoreReadOnlyError      files read-only for this user        (5 / 503)
    │   └── DiskFullError           no space left while writing          (7 / 503)
    ├── EngineError                 the language model engine failed     (6 / 503)
    │   ├── EngineNotReadyError     still loading, or stopped            (6 / 503)
    │   ├── EngineUnavailableError  remote model server unreachable      (6 / 503)
    │   ├── EngineTimeoutError      remote model server too slow         (6 / 504)
    │   └── BusyError               all answer places taken              (6 / 503) capacity
    ├── DeliveryError               a hand-off channel refused or failed (1 / 502)
    ├── BadRequestError             the caller sent something unusable   (2 / 422)
    ├── NotFoundError               no such thing, or not visible        (2 / 404)
    ├── ConflictError               clashes with what is there already   (2 / 409)
    ├── AuthError                   missing, invalid or expired key      (2 / 401)
    │   └── InvalidIdentityError    bad signed widget identity           (2 / 401) widget_auth
    ├── ForbiddenError              valid, but not allowed here          (2 / 403)
    │   ├── OriginNotAllowedError   widget used from another site        (2 / 403) widget_auth
    │   ├── IdentityGroupsNotAllowedError
    │   │                           identity claims a group not granted  (2 / 403) widget_auth
    │   └── InvalidWidgetTokenError unknown widget token                 (2 / 403) widget_auth
    ├── RateLimitedError            too many questions (Retry-After)     (2 / 429) principal
    └── ClientDisconnectedError     the client left before its answer    (1 / 499) streaming
"""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path


def how_to_run(command: str) -> str:
    """``command`` (``"rag-ingest keys list"``) as a user on this machine types it, for every
    message that says what to run next: ``.venv/bin/rag-ingest keys list`` (as the README
    writes it) when this process runs from the checkout's ``.venv``, whose ``bin`` is not on
    ``PATH`` after ``make setup``; the bare name when the command is on ``PATH`` (the
    container images, an activated environment). Never an absolute path: callers of the API
    see some of these messages."""
    name = command.split(" ", 1)[0]
    scripts = Path(sys.executable).parent
    on_path = shutil.which(name)
    if on_path is not None and Path(on_path).parent == scripts:
        return command
    if Path(sys.prefix).name == ".venv":
        return f".venv/bin/{command}"
    return command


class RagError(Exception):
    """Base class: a failure the service expected and can explain."""

    exit_code = 1
    http_status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RagError):
    exit_code = 2
    http_status = 500
    code = "config_error"


class AssetError(RagError):
    exit_code = 3
    http_status = 503
    code = "asset_missing"


class IngestError(RagError):
    exit_code = 4
    http_status = 422
    code = "ingest_failed"


class UnsupportedFileError(IngestError):
    http_status = 415
    code = "unsupported_file"


class StoreError(RagError):
    exit_code = 5
    http_status = 503
    code = "store_unavailable"


class EmbedderMismatchError(StoreError):
    http_status = 409
    code = "embedder_mismatch"


class IndexBusyError(StoreError):
    http_status = 409
    code = "index_busy"


class NoCollectionError(StoreError):
    code = "no_collection"


class StoreReadOnlyError(StoreError):
    code = "store_read_only"


class DiskFullError(StoreError):
    exit_code = 7
    code = "disk_full"


# How the libraries under the index say it: errno from Python, SQLite's messages (also
# inside Chroma's errors, whose Rust core reports I/O errors as "os error N").
_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_FULL_TEXT = ("database or disk is full", "no space left on device", "os error 28")
_READ_ONLY_TEXT = (
    "readonly database",
    "read-only file system",
    "permission denied",
    "operation not permitted",
    "unable to open database file",
    "os error 30",
    "os error 13",
)


def storage_failure(exc: BaseException, what: str, where: object) -> StoreError | None:
    """The typed error for a write to ``what`` (at ``where``) that failed because the disk
    is full or the files are read-only; None when ``exc`` is something else.

    Chroma 1.5 reports a read-only store as ``attempt to write a readonly database`` (SQLite
    code 8, or 1544 when only the folder is read-only) and an immutable folder as
    ``unable to open database file`` (code 14, the rollback journal cannot be created).
    """
    number = exc.errno if isinstance(exc, OSError) else None
    text = str(exc).lower()
    if number in _FULL or any(t in text for t in _FULL_TEXT):
        return DiskFullError(
            f"Disk full: no space left while writing the {what} at {where}. Free space on "
            f"that disk, then re-run {how_to_run('rag-ingest sync')} (or the same command): "
            "documents already "
            "stored are kept, the interrupted one is cleaned up and added again."
        )
    if number in _READ_ONLY or any(t in text for t in _READ_ONLY_TEXT):
        return StoreReadOnlyError(
            f"The {what} at {where} cannot be written: it is read-only or not writable by "
            f"this user ({type(exc).__name__}: {exc}). Nothing was changed. Make it writable "
            f"(for example chmod -R u+w {where}, or fix the mount or the owner), then retry."
        )
    return None


class EngineError(RagError):
    exit_code = 6
    http_status = 503
    code = "engine_error"


class EngineNotReadyError(EngineError):
    code = "engine_not_ready"


class EngineUnavailableError(EngineError):
    code = "engine_unavailable"


class EngineTimeoutError(EngineError):
    http_status = 504
    code = "engine_timeout"


class DeliveryError(RagError):
    """A hand-off could not be delivered on one channel (webhook, e-mail); the outbox
    retries it with backoff (rag/handoff/outbox.py)."""

    http_status = 502
    code = "delivery_failed"


class BadRequestError(RagError):
    exit_code = 2
    http_status = 422
    code = "bad_request"


class NotFoundError(RagError):
    exit_code = 2
    http_status = 404
    code = "not_found"


class ConflictError(RagError):
    """The request clashes with what is stored (a duplicate, a change to a retired entry)."""

    exit_code = 2
    http_status = 409
    code = "conflict"


class AuthError(RagError):
    exit_code = 2
    http_status = 401
    code = "unauthorized"


class ForbiddenError(RagError):
    exit_code = 2
    http_status = 403
    code = "forbidden"
