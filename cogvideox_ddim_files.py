"""Writing files whole or not at all, with the user's usual permissions, and naming files by their content.

A leaf module (no relative imports): the pipeline file imports it directly, so diffusers' `custom_pipeline` loader
ships it beside the pipeline.
"""

import contextlib
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
        yield partial
        os.chmod(partial, 0o666 & ~user_umask())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
