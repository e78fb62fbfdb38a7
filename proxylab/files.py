"""Writing results so that nothing is lost: every file is written whole or not at all, and a
failed write (full disk, a folder that cannot be written) says what happened and what is kept."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


class WriteFailed(OSError):
    """A file could not be written; the message names it, the cause and what is kept."""


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]


def atomic_write(path: "str | Path", write: Callable[[Path], None], what: str = "file") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A reader never sees a half-written file; if writing fails (e.g. ``No space left on device``)
    the temporary file is removed, the previous ``path`` is left as it was, and
    :class:`WriteFailed` says so.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: ranks never share it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is kept as it was" if path.exists() else f"nothing was written to {path}"
        raise WriteFailed(f"could not write the {what} {path} ({_reason(err)}); {kept}. Free disk space or "
                          "choose a writable folder, then rerun the same command") from err
    return path


def write_text_atomic(text: str, path: "str | Path", what: str = "file") -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text), what)


def write_json_atomic(obj, path: "str | Path", what: str = "file") -> Path:
    """``obj`` as indented JSON, written atomically."""
    return write_text_atomic(json.dumps(obj, indent=1), path, what)


def save_atomic(obj, path: "str | Path", what: str = "checkpoint") -> Path:
    """``torch.save(obj)``, written atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp), what)


def writable_dir(path: "str | Path", flag: str = "--out") -> Path:
    """Create ``path`` if needed and check that a file can be written in it, before any work is
    done; ``ValueError`` names the folder, the reason and the flag to change."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to {path} ({_reason(err)}); choose a writable {flag}") from None
    return path
