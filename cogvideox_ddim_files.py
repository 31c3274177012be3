"""Writing files whole or not at all, with the user's usual permissions, and naming files by their content.

A leaf module (no relative imports): the pipeline file imports it directly, so diffusers' `custom_pipeline` loader
ships it beside the pipeline.
"""

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator


PARTIAL_PREFIX = ".partial-"  # temporary names of files being written; never a finished output


def user_umask() -> int:
    """The process's umask (reading it means setting it: it is put straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside `path` to write to; when the block ends without an error, move it onto `path`
    with the permissions an ordinary new file gets (mkstemp makes it 0600). On an error the temporary file is removed
    and `path` is left as it was, so a reader never sees a half-written file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=suffix, prefix=PARTIAL_PREFIX, dir=directory)
    os.close(handle)
    try:
        try:
            yield partial
        except Exception as error:  # a full disk named as such, with the path asked for (not the temporary one)
            if is_disk_full(error, directory) and not isinstance(error, NoSpaceError):
                raise NoSpaceError(path) from error
            raise
        os.chmod(partial, 0o666 & ~user_umask())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


LOW_SPACE_BYTES = 1 << 20  # less free space than this after a failed write: the disk filled up


class NoSpaceError(OSError):
    """A write that failed because the disk is full: "No space left on device", naming the file (`filename`) as the
    user asked for it; `strerror` is the system's words, so "Could not save X: {strerror}" reads right."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

    def __str__(self) -> str:
        return (f"{self.strerror}: could not write {self.filename!r}. Free some space on that disk, or write "
                "somewhere else.")


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes an unprivileged user may still write on the file system of `path` (its nearest existing folder)."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        stats = os.statvfs(path)
    except (OSError, AttributeError):  # no statvfs on Windows
        return None
    return stats.f_bavail * stats.f_frsize


def is_disk_full(error: BaseException, path: str | os.PathLike) -> bool:
    """Whether `error`, raised while writing under `path`, comes from a full disk: ENOSPC (or EDQUOT, a full
    quota) itself; a writer that words it its own way (safetensors: "No space left on device (os error 28)"); or a
    writer whose helper process died of it and that reports only what that did to the pipe ("Broken pipe" from
    ffmpeg), told by the disk having (almost) no space left."""
    if isinstance(error, NoSpaceError):
        return True
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    text = str(error)
    if "No space left on device" in text or "os error 28" in text:
        return True
    if isinstance(error, OSError) and (error.errno == errno.EPIPE or "Broken pipe" in text):
        free = free_bytes(path)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


AT_FDCWD = -100  # <fcntl.h>: paths relative to the working directory
RENAME_EXCHANGE = 2  # <linux/fs.h>: renameat2 swaps the two paths


def _renameat2():
    """glibc's renameat2 (2.28+), or None where there is none (not Linux, musl before 1.2.3, an older glibc)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange_paths(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Swap two existing paths (folders or files) in one atomic step: `renameat2(..., RENAME_EXCHANGE)` (Linux 3.15+;
    ext4, xfs, btrfs, tmpfs and most local file systems). Returns False, with both paths as they were, where that is
    unavailable (no renameat2 in the C library, a kernel without it, a file system that refuses the flag); the caller
    then falls back to two renames. Any other failure raises OSError naming the paths."""
    import ctypes
    import errno

    function = _renameat2()
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(first), None, os.fspath(second))
