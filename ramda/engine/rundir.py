"""The run directory: checked before Hydra creates it, locked by one process, cleared of killed writes.

- :func:`check_run_dir`: a path that cannot become a writable directory (empty, a name over 255 bytes, under a
  regular file, a regular file itself, on a read-only file system, in a directory this user cannot write) is a
  one-line :class:`ConfigError` before anything is created;
- :class:`RunLock`: an exclusive POSIX lock (``fcntl.lockf``) on ``<run dir>/.lock`` for the whole run; a second
  process on the same directory is refused with the holder's pid, and the OS releases the lock when its holder
  dies, so a killed run never blocks its resume (unlike ``flock``, the lock is not inherited by forked
  DataLoader workers, which may outlive a killed parent for a few seconds);
- :func:`remove_stale_writes`: the temporary files a killed atomic write left behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ramda.engine.errors import ConfigError
from ramda.files import remove_stale

LOCK_NAME = ".lock"
NAME_MAX = 255
RUN_FILES = ("checkpoint.pt", ".checkpoint.next.pt", "config.yaml", "metrics.jsonl", "summary.json")


def check_run_dir(path: str, key: str = "hydra.run.dir") -> None:
    """Raise a :class:`ConfigError` naming ``key`` unless ``path`` is, or can be made, a writable directory."""
    if not path.strip():
        raise ConfigError(key, "is empty", "valid: a directory path (the run's files go there)")
    p = Path(path).expanduser().absolute()
    for name in p.parts:
        if len(os.fsencode(name)) > NAME_MAX:
            raise ConfigError(
                key,
                f"the name '{name[:40]}…' is {len(os.fsencode(name))} bytes",
                f"valid: names of at most {NAME_MAX} bytes",
            )
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == p else f"is under {existing}, which is a file"
        raise ConfigError(key, f"{p} {where}, not a directory", "valid: a directory path")
    if _read_only(existing):
        raise ConfigError(key, f"{p} is on a read-only file system", "valid: a directory on a writable one")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, f"{existing} is not writable by this user", "valid: a directory you can write")


def check_job_dir(cfg: DictConfig, multirun: bool) -> None:
    """:func:`check_run_dir` on the directory Hydra is about to create for a composed job (``cfg`` composed with
    its ``hydra`` node): ``hydra.run.dir``, or ``hydra.sweep.dir`` with its ``subdir`` under ``-m``."""
    try:
        if not multirun:
            check_run_dir(str(cfg.hydra.run.dir))
            return
        sweep = str(cfg.hydra.sweep.dir)
        check_run_dir(sweep, "hydra.sweep.dir")
        subdir = str(cfg.hydra.sweep.subdir)
    except OmegaConfBaseException:
        return  # left to Hydra: an interpolation only it can resolve (e.g. hydra.job.num)
    check_run_dir(str(Path(sweep) / subdir), "hydra.sweep.subdir")


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


class RunLock:
    """The exclusive lock on a run directory, held from before the checkpoint is read until the run ends.

    ``<run dir>/.lock`` exists only while a run holds it (a killed run's file is reused), and nothing is written
    into it: a refused run leaves the directory as it was. The holder's pid comes from ``/proc/locks``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                self.created = True
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # its holder just removed it
                self.created = False
            except OSError as err:
                raise ConfigError("hydra.run.dir", f"cannot create {self.path} ({err.strerror})") from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _holder(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError("hydra.run.dir", f"cannot lock {self.path} ({err.strerror})") from None
                raise ConfigError(
                    "hydra.run.dir",
                    f"{run_dir} is in use by another run (pid {holder})",
                    "valid: wait until it ends (it resumes there), or another hydra.run.dir",
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd: int | None = fd
                return
            os.close(fd)  # locked a file its holder removed on release: lock the current one

    def release(self, remove: bool) -> None:
        """Unlock; ``remove`` the lock file too (a refused run removes only a file it created)."""
        if self._fd is None:
            return
        if remove or self.created:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def _holder(fd: int) -> str:
    """The pid holding the lock on ``fd``'s file, from ``/proc/locks`` (``unknown`` where it cannot be read)."""
    inode = str(os.fstat(fd).st_ino)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        parts = line.split()
        if "POSIX" not in parts or "->" in parts:
            continue
        i = parts.index("POSIX")
        if len(parts) > i + 4 and parts[i + 4].rsplit(":", 1)[-1] == inode:
            return parts[i + 3]
    return "unknown"


def remove_stale_writes(run_dir: Path) -> list[Path]:
    """Remove the ``.<file>.*.tmp`` files of killed atomic writes of the run's files, and a pending checkpoint
    that was never found good (call under the lock)."""
    removed: list[Path] = []
    pending = run_dir / ".checkpoint.next.pt"
    if pending.is_file():
        pending.unlink()
        removed.append(pending)
    for name in RUN_FILES:
        removed += remove_stale(run_dir, name)
    return removed
