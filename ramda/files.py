"""Whole-file writes that a crash never leaves half done (checkpoints, run outputs, data caches)."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
# Errors of file systems without hard links: exclusive creation then falls back to a checked rename.
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp`` beside ``path``: unique per writer, recognisable by :func:`remove_stale`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def atomic_write(
    path: Path, write: Callable[[BinaryIO], object], *, replace: bool = True, durable: bool = True
) -> bool:
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it to ``path``.

    A crash at any point leaves the old file or the new one, never part of one; a failed write removes the
    temporary file and re-raises. The file gets the mode of any new file (0666 less the umask). ``durable``
    fsyncs the file and the directory before returning (run outputs; a cache that can be rebuilt skips it).
    ``replace=False`` never replaces an existing ``path`` (of concurrent writers the first one wins); returns
    whether ``path`` was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            out = _Recorded(f)
            try:
                write(out)  # type: ignore[arg-type]
            except Exception:
                if out.error is not None:  # torch.save turns a failed write into an opaque RuntimeError
                    raise out.error from None
                raise
            f.flush()
            if durable:
                os.fsync(f.fileno())
        written = _publish(tmp, path, replace)
    finally:
        tmp.unlink(missing_ok=True)
    if durable and written:
        fsync_dir(path.parent)
    return written


class _Recorded:
    """A binary file that remembers the first ``OSError`` of a write (ENOSPC, EIO) for the caller to report."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self._f, name)


def _publish(tmp: Path, path: Path, replace: bool) -> bool:
    if replace:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in _NO_LINKS:
            raise
    if path.exists():
        return False
    os.replace(tmp, path)
    return True


def fsync_dir(directory: Path) -> None:
    """Make the renames in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale(directory: Path, name: str) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left for ``directory/name`` when a writer was killed
    (only safe while no other process writes there); returns what it removed."""
    removed = []
    for tmp in directory.glob(f".{name}.*{TMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
