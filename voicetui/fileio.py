"""Every file the app writes goes through here: atomic replaces and durable line appends.

* :func:`atomic_write` — a whole file at once: temp file in the same directory, fsync,
  rename, fsync the directory. A symlink is followed (its target is replaced, the link
  stays); a path that is not a regular file (device, FIFO, socket, directory) is refused.
* :class:`AtomicFile` — the same for a file written bit by bit (a WAV, an export): nothing
  appears at the path, and nothing already there is touched, until :meth:`commit`.
* :class:`LineAppender` — complete lines or nothing: short writes are continued, a failed
  write is cut back to the last complete line, and on a full/read-only/forbidden disk it
  stops writing, keeps the lines in memory and reports once.
* :func:`writer` — the one background thread that does the appends (transcript, usage), so
  the event loop never waits on the disk.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import queue
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

log = logging.getLogger("voicetui.fileio")

# errors that mean "this disk will not take our bytes": stop writing, say so once
_REFUSING = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "I/O error",
}


class UnsafePath(OSError):
    """A path the app refuses to write (not a regular file, or the input file itself)."""


def reason(exc: OSError) -> str:
    """A short human reason for ``exc`` ("disk full", "permission denied", ...)."""
    if exc.errno in _REFUSING:
        return _REFUSING[exc.errno]
    return exc.strerror or type(exc).__name__


def kind_of(mode: int) -> str:
    """What a non-regular file is, for a one-line refusal ("a FIFO", "a directory", ...)."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def write_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` lands in: a symlink's target, checked to be a regular
    file (or absent). Raises :class:`UnsafePath` with one line otherwise."""
    given = Path(path)
    target = Path(os.path.realpath(given))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise UnsafePath(exc.errno, f"cannot write {given}: {reason(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(
            errno.EINVAL, f"refusing to write {given}: it is {kind_of(st.st_mode)}, not a file"
        )
    return target


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` both exist and are the same file (same inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _fsync_dir(directory: Path) -> None:
    # the rename itself must survive a crash; some file systems cannot fsync a directory
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A file written in pieces that replaces ``path`` only when complete.

    Opens a temp file next to the target (after :func:`write_target`'s checks); write to
    :attr:`handle`, then :meth:`commit` (fsync, rename) or :meth:`abort` (unlink). As a
    context manager it commits on success and aborts on an exception.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o600) -> None:
        self.path = Path(path)
        self.target = write_target(path)
        self.target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(
            dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
        )
        self.tmp = Path(tmp)
        with contextlib.suppress(OSError):  # vfat has no modes: keep the default
            os.fchmod(fd, mode)
        self.handle: IO[bytes] = os.fdopen(fd, "w+b")
        self._done = False

    def commit(self) -> None:
        """Make the written bytes durable and put them at the path (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.tmp, self.target)
        except BaseException:
            self._discard()
            raise
        _fsync_dir(self.target.parent)

    def abort(self) -> None:
        """Drop the temp file; the path is left as it was (idempotent)."""
        if self._done:
            return
        self._done = True
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def replace_with(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a complete ``tmp`` over ``target`` (same directory) and make it durable."""
    os.replace(tmp, target)
    _fsync_dir(Path(target).parent)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> Path:
    """Replace ``path`` with ``data`` atomically (see the module doc); returns the file
    written (a symlink's target). Raises :class:`UnsafePath` or :class:`OSError`."""
    with AtomicFile(path, mode) as f:
        f.handle.write(data)
    return f.target


# ------------------------------------------------------------------------------ appending

FailureCallback = Callable[[str], None]


class LineAppender:
    """Appends complete lines to one file; see the module doc.

    Not thread-safe by itself: all calls come from one thread (the :func:`writer` thread).
    ``what`` names the file in the failure line ("transcript", "usage").
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        what: str = "file",
        on_failure: FailureCallback | None = None,
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.on_failure = on_failure
        self.failure: str | None = None
        self.unsaved: list[bytes] = []  # lines the disk refused, oldest first
        self._fd: int | None = None
        self._opened = False

    def _open(self) -> int | None:
        if not self._opened:
            self._opened = True
            try:
                target = write_target(self.path)
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                self._fail(exc)
        return self._fd

    def open(self) -> None:
        """Create the file now (else at the first line); failures are reported, not raised."""
        self._open()

    def append(self, line: bytes, *, sync: bool = False) -> bool:
        """Write ``line`` (must end with a newline) whole or not at all; fsync if ``sync``.

        Returns False when the line was kept in memory instead (the disk said no)."""
        fd = self._open() if self.failure is None else None
        if fd is None:
            self.unsaved.append(line)
            return False
        start = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(line)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if sync:
                os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # no torn line: cut back to the last complete one
            self.unsaved.append(line)
            self._fail(exc)
            return False
        return True

    def _fail(self, exc: OSError) -> None:
        if self.failure is not None:
            return
        self.failure = f"{self.what} not saved: {reason(exc)} at {self.path}"
        log.error("%s (%s)", self.failure, exc)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.on_failure is not None:
            try:
                self.on_failure(self.failure)
            except Exception:
                log.exception("failure callback failed")

    def close(self) -> None:
        """Fsync and close (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            self._fail(exc)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)


class DiskWriter:
    """One daemon thread running disk jobs in order; :meth:`drain` waits for them.

    Jobs must not raise (they are logged if they do). At interpreter exit the queue is
    drained (bounded), so nothing queued is lost on a normal exit.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job`` on the writer thread, after everything submitted before it."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="voicetui-disk-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put(job)

    def drain(self, timeout: float | None = 10.0) -> bool:
        """Wait until every job submitted so far has run; False on timeout."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        done = threading.Event()
        self._queue.put(done.set)
        return done.wait(timeout)

    def reset_after_fork(self) -> None:
        """A forked child has no writer thread: start its own on first use."""
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:
                log.exception("disk write failed")


_writer = DiskWriter()


def writer() -> DiskWriter:
    """The process's one disk-writer thread."""
    return _writer


atexit.register(_writer.drain, 5.0)
os.register_at_fork(after_in_child=_writer.reset_after_fork)
