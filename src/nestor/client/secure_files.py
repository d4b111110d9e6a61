"""Writing secrets and outputs safely on a party's machine.

- Secret files are created 0600 from the first byte (never chmod-ed after),
  and refused on load when group or others can read them.
- Outputs are written to a temporary file beside the destination and renamed
  only once complete, so a failure leaves nothing at the destination.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from nestor.errors import ConfigurationError, KeyFileError

SECRET_MODE = 0o600


def write_secret_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Create ``path`` with mode 0600 and write ``data``; atomic and fsync-ed."""
    if path.exists() and not overwrite:
        raise ConfigurationError(
            f"{path} already exists; refusing to overwrite a key file",
            hint="choose another path, or remove the old file if you are sure",
        )
    with atomic_output(path, overwrite=overwrite, mode=SECRET_MODE) as f:
        f.write(data)


def read_secret_file(path: Path) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible by other users (mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"run: chmod 600 {path}",
        )
    return path.read_bytes()


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool = False, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file that becomes ``path`` only if the block completes.

    On any exception the temporary is removed: no partial output survives.
    The temporary is 0600 while it is written, whatever ``mode`` ends up.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigurationError(
            f"{path} already exists", hint="pass --force to replace it, or choose another path"
        )
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigurationError(f"directory {directory} does not exist")
    tmp = directory / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if mode != 0o600:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
