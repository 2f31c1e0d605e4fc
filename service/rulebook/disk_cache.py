"""Data built once from its sources and kept on disk, so that a process does not build it again.

The ICD-10-CM code set (parsed from the package's XML, about 2 s) and the text index built on it
(about 3 s) are the same for every process on one install, so each is built on first use and
written to the cache folder: $FORMULARY_CACHE_DIR, else $XDG_CACHE_HOME/formulary, else
~/.cache/formulary. Not the instance folder: the CLI decides without an instance, the data
derives from the installed packages and the code, not from an instance, and the instances of
one user share it. The folder is created owner-only.

A file holds one header line (JSON: what the data was built from, and the SHA-256 of the rest)
and the data in `marshal` format. A file is used only when its header names exactly the source
the caller names (package versions, the installed files' recorded hashes, sizes and times, a
digest of the code that builds it, the Python version) and the data has the digest the header
states; anything else (missing, unreadable, another source, corrupt, not the user's own or
writable by others) is built again from the source and rewritten, so a stale cache never answers.
marshal loads ten times faster than JSON here, and is safe for this use: it builds only plain
values (never runs code, unlike pickle), the file is written by the service itself into a folder
only its user writes, and its digest is checked before it is read.
"""

import gc
import hashlib
import json
import logging
import marshal
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
FORMAT = 1


def cache_dir() -> Path:
    explicit = os.environ.get("FORMULARY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "formulary"


def file_digest(*paths: str | os.PathLike) -> str:
    """The SHA-256 of these files' contents: the code that builds a cached value is part of its source."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def cached(name: str, source: dict, build: Callable[[], T], valid: Callable[[object], bool]) -> T:
    """The value kept as `name` if it was built from exactly `source`, else `build()` (kept for next time).

    `valid` checks the shape of what was read (the types the caller expects), a last guard.
    """
    header = {
        "format": FORMAT,
        "python": list(sys.version_info[:2]),
        "marshal": marshal.version,
        "byteorder": sys.byteorder,
        "source": source,
    }
    path = cache_dir() / f"{name}.marshal"
    found = _read(path, header)
    if found is not None and valid(found):
        return found  # type: ignore[return-value]
    value = build()
    _write(path, header, value)
    return value


def _read(path: Path, header: dict) -> object | None:
    try:
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            if status.st_uid != os.getuid() or status.st_mode & 0o022:
                log.warning("%s is not the service user's own file: building it again", path)
                return None
            stored = json.loads(handle.readline())
            data = handle.read()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("the cache file %s cannot be read (%s): building it again", path, error)
        return None
    digest = stored.pop("sha256", None) if isinstance(stored, dict) else None
    if stored != header:
        return None  # built from another source: stale
    if digest != hashlib.sha256(data).hexdigest():
        log.warning("the cache file %s is corrupt: building it again", path)
        return None
    enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of small containers: the collector would run dozens of times
    try:
        return marshal.loads(data)
    except (EOFError, ValueError, TypeError) as error:
        log.warning("the cache file %s cannot be read (%s): building it again", path, error)
        return None
    finally:
        if enabled:
            gc.enable()


def _write(path: Path, header: dict, value: object) -> None:
    """Written whole or not at all (a temporary file renamed over it); a folder that cannot be
    written only means the next process builds the value again."""
    try:
        data = marshal.dumps(value)  # type: ignore[arg-type]  # plain values: marshal refuses others (ValueError)
        line = json.dumps({**header, "sha256": hashlib.sha256(data).hexdigest()}).encode() + b"\n"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(line)
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except (OSError, ValueError) as error:
        log.warning("the cache file %s cannot be written (%s): it will be built again next time", path, error)
