"""Point numba's on-disk cache at a directory keyed by a hash of the jitted sources.

numba's `cache=True` checks only the source file of the function it loads, not the files of
the functions it calls, so editing e.g. core/vector.py would leave a stale cached run loop (and
a renamed state type can make the cache unloadable).  Keying the cache directory by the contents
of every jitted module makes a stale cache impossible.  An explicit NUMBA_CACHE_DIR wins.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba

_JITTED_PACKAGES = ("core", "hbm")


def source_digest() -> str:
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for pkg in _JITTED_PACKAGES:
        for path in sorted((root / pkg).glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    h.update(numba.__version__.encode())
    return h.hexdigest()[:16]


def configure() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    name = f"numba-{source_digest()}"
    candidates = [Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plena-emulator",
                  Path(tempfile.gettempdir()) / f"plena-emulator-{os.getuid() if hasattr(os, 'getuid') else 0}"]
    for base in candidates:  # an unwritable home (containers, CI) falls back to the temp dir
        try:
            (base / name).mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(base / name, os.W_OK):
            numba.config.CACHE_DIR = str(base / name)
            return
