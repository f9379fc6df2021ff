"""Output files of the command-line tools: checked before a run, written atomically.

A run can take minutes; an output path that cannot be written should fail before it starts, not
after.  Every file is written to a temporary name in its directory and renamed into place, so a
failed write (a full disk, a dump name taken by a directory) never leaves a truncated file, and a
set of files (`replace_all`) appears only when all of them were written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import InputError


def _default_mode() -> int:
    """Permissions a new file gets (mkstemp's are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class OutputError(InputError):
    """An output path that cannot be written (bad input: nothing was run, or nothing was kept)."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Raise OutputError unless `path` can be created or replaced: its directory exists and is
    writable, and the path itself is not a directory."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise OutputError(f"{what} {str(p)!r} is a directory")
    if not parent.is_dir():
        raise OutputError(f"{what} {str(p)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {str(p)!r}: directory {str(parent)!r} is not writable")
    return p


def check_output_dir(path: str | os.PathLike, names: Iterable[str] = (), what: str = "output directory") -> Path:
    """Raise OutputError unless `path` is (or can be created as) a writable directory in which
    none of `names` is a directory."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise OutputError(f"{what} {str(d)!r} exists and is not a directory")
    if d.is_dir():
        for name in names:
            check_output_file(d / name, "output file")
        if not os.access(d, os.W_OK | os.X_OK):
            raise OutputError(f"{what} {str(d)!r} is not writable")
        return d
    ancestor = d.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {str(d)!r} cannot be created ({str(ancestor)!r} is not a writable directory)")
    return d


@contextmanager
def _temporary(path: Path, mode: str, **open_kwargs) -> Iterator[tuple[IO, Path]]:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    tmp_path = Path(tmp)
    try:
        os.chmod(fd, _default_mode())
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f, tmp_path
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """An open file that becomes `path` (renamed into place) only when the block completes."""
    p = Path(path)
    try:
        with _temporary(p, mode, **open_kwargs) as (f, tmp):
            yield f
            f.flush()
        try:
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {str(p)!r}: {_reason(exc)}") from None


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path, "w", encoding="utf-8") as f:
        f.write(text)


def replace_all(files: Mapping[Path, bytes | Iterable[bytes]]) -> None:
    """Write every file to a temporary name, then rename them all into place; on any failure no
    file of the set is created or replaced.  A value is the content or an iterable of chunks."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, content in files.items():
            with _temporary(path, "wb") as (f, tmp):
                written.append((tmp, path))
                for chunk in ([content] if isinstance(content, (bytes, bytearray, memoryview)) else content):
                    f.write(chunk)
        for tmp, path in written:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {str(path)!r}: {_reason(exc)}") from None
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
