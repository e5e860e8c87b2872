"""Writing outputs so that a crash, a signal or a full disk never leaves a half-written file.

Everything is written under a hidden temporary name next to its destination and renamed into
place when complete (``os.replace`` is atomic within a file system). Temporary names carry the
writer's process id, so a later run can tell the leftovers of a crashed run (whose process is
gone) from those of a run still going, and removes only the former.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from .errors import PREFIX, UserError

__all__ = ["temp_sibling", "remove_stale_temps", "atomic_write", "atomic_write_text", "write_json", "atomic_dir",
           "json_text"]


def temp_sibling(path: Path, keep_suffix: bool = False) -> Path:
    """A fresh hidden name next to ``path``: ``.NAME.tmp-PID-RANDOM`` (+ the suffix of path
    with ``keep_suffix``, for writers that choose a format from the file name)."""
    path = Path(path)
    base = path.stem if keep_suffix else path.name
    tail = path.suffix if keep_suffix else ""
    return path.with_name(f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}{tail}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary siblings of ``path`` (files or folders, from ``temp_sibling`` or
    ``atomic_dir``) whose writing process no longer runs; returns what was removed."""
    path = Path(path)
    removed = []
    parent = path.parent if str(path.parent) else Path(".")
    names = "|".join(re.escape(n) for n in {path.name, path.stem})
    pattern = re.compile(r"^\.(?:" + names + r")\.(?:tmp|old)-(\d+)-")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def atomic_write(path: Path, write) -> None:
    """Call ``write(f)`` on a binary file that becomes ``path`` only once complete: a temporary
    sibling, fsynced, then renamed. On any error the temporary file is removed."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (``atomic_write``)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def json_text(obj, indent: int | None = 2) -> str:
    """Strict JSON (no NaN or Infinity, which JSON does not have): a non-finite number is a
    bug upstream, and it fails here rather than in the reader."""
    return json.dumps(obj, indent=indent, allow_nan=False, ensure_ascii=False)


def write_json(path: Path, obj) -> None:
    """``obj`` as strict JSON (``json_text``), written atomically."""
    atomic_write_text(path, json_text(obj) + "\n")


@contextlib.contextmanager
def atomic_dir(out_dir, marker: str = "results.json"):
    """Yield a temporary sibling folder that replaces ``out_dir`` when the block succeeds.

    An existing ``out_dir`` is replaced only when it is empty or holds ``marker`` (an earlier
    output of ours): never delete a folder of the user's own files. On any exception (also
    KeyboardInterrupt) the temporary folder is removed and ``out_dir`` is left as it was.
    Leftover temporary folders of crashed earlier runs are removed first.
    """
    final = Path(out_dir).resolve()
    if final.exists() and not final.is_dir():
        raise UserError(f"{PREFIX}output {str(out_dir)!r} exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not (final / marker).is_file():
        raise UserError(f"{PREFIX}output directory {str(out_dir)!r} is not empty and holds no {marker} (not an "
                        "actcam output); choose another output folder so nothing of yours is overwritten")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
        # mkdtemp makes the folder private (0700); the output is an ordinary folder.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
    except OSError as exc:
        raise UserError(f"{PREFIX}cannot create output directory {str(out_dir)!r}: {exc.strerror or exc}") from None
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-", dir=final.parent))
            final.rename(old / "d")
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
