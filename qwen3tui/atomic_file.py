"""Writing a file so that it is either whole or not there: never half written, never clobbered.

The text goes to a temporary file in the target's folder, is flushed to disk, and is then renamed
onto the target name (a rename within one folder is atomic). A full disk or a killed process
leaves the old file as it was. An existing file, or a symbolic link, is replaced only when the
caller says `overwrite=True`; even then the link itself is replaced, never the file it points
to. Errors are OSError subclasses whose `str()` is one line naming the file.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path


class TargetExistsError(FileExistsError):
    """The target exists (or is a link) and overwriting was not asked for."""


def _one_line(err: OSError, path: Path) -> str:
    return f"cannot write {path}: {err.strerror or err}"


def write_atomically(path: str | Path, data: str | bytes, *, overwrite: bool = False) -> None:
    """Write `data` (str as UTF-8) to `path` atomically.

    Raises TargetExistsError when `path` exists or is a symbolic link and `overwrite` is false,
    IsADirectoryError for a folder, and OSError (one line) when the data cannot be written;
    in every case the old file, if any, is untouched and no temporary file is left behind.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if target.is_dir() and not target.is_symlink():
        raise IsADirectoryError(errno.EISDIR, f"cannot write {target}: it is a folder")
    if not overwrite and (target.is_symlink() or target.exists()):
        what = "a symbolic link" if target.is_symlink() else "a file"
        raise TargetExistsError(
            errno.EEXIST, f"{target} already exists ({what}); choose another name or overwrite it"
        )
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        # 0o666 and O_EXCL: the usual permissions after the umask, and never someone else's file.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise type(err)(err.errno, _one_line(err, target)) from None
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            _move_into_place(temporary, target, overwrite)
        except OSError as err:
            if isinstance(err, TargetExistsError):
                raise
            raise type(err)(err.errno, _one_line(err, target)) from None
    finally:
        if temporary.exists():
            temporary.unlink()
    _sync_folder(target.parent)


def _move_into_place(temporary: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    # A hard link fails if the name was taken since the check above (no race); where the file
    # system has no hard links, a last check and a rename come as close as it allows.
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise TargetExistsError(
            errno.EEXIST, f"{target} already exists; choose another name or overwrite it"
        ) from None
    except OSError:
        if target.is_symlink() or target.exists():
            raise TargetExistsError(
                errno.EEXIST, f"{target} already exists; choose another name or overwrite it"
            ) from None
        os.replace(temporary, target)
        return
    temporary.unlink()


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
