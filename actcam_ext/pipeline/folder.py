"""``explain_folder``: every image under a folder, resumable, sharded under torchrun.

Layout of ``OUT``::

    results.jsonl            one image record per line (outputs.image_record), sorted by path
    results.rank{r}.jsonl    rank r's part while a run is going (merged and removed at the end)
    errors.jsonl             {"path", "error"} for files that could not be read (skipped)
    run.json                 {"model", "method", "layer", "root"}
    index.html               the results page (page.write_index), rebuilt at the end of every run
    <relative dir>/<name>_<rank>_<class>_{heatmap.png,overlay.jpg}   per image (outputs.output_name)

Records have the fields of ``explain``'s per-image record (``path`` relative to the input
folder, picture paths relative to OUT). A reader thread decodes images ahead of the model (at
most ``2 * batch`` waiting); ``batch`` readable images go through one forward/backward, each map
made at its own image's size. Every rank appends the chunk's lines in one write and flushes and
fsyncs them as soon as the chunk is done, so a crash (kill -9, a full disk) loses at most the
chunk in flight. A rerun first cuts its own part back to the last complete line (a write cut
short leaves a partial line, which must not swallow the next record), then reads
``results.jsonl`` and any ``results.rank*.jsonl`` left over (from any number of ranks) and skips
those images.

One run at a time: rank 0 holds an exclusive lock on ``OUT/.actcam-batch.lock`` for the whole
run; a second run on the same OUT refuses at once with a one-line error naming the process
that holds it.

Sharding: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is
initialised with gloo on CPU, nccl on GPU; the sorted list of images still to do is split by
index (image i goes to rank i mod world), so the shards are disjoint and cover everything.
After a barrier, rank 0 merges all parts (one line per path) into ``results.jsonl``, written to
a temporary file and renamed, then removes the parts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path, PurePosixPath

import torch
import torch.distributed as dist

from .._files import atomic_write_text, json_text, remove_stale_temps, write_json
from .._progress import progress_bar
from ..errors import PREFIX, UserError
from ..images import list_images, read_image
from ._threads import put_unless_stopped
from .explainer import Explainer
from .options import ExplainOptions
from .outputs import image_record, output_name
from .page import runs_from_batch, write_index

__all__ = ["explain_folder", "rank_device", "distributed_rank", "LOCK"]

LOCK = ".actcam-batch.lock"


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ["RANK"]), world


def rank_device(device=None):
    """The device this process should use: under torchrun with CUDA, ``cuda:LOCAL_RANK`` (one
    GPU per process on each node); otherwise ``device`` as given."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = (device is not None and str(device).startswith("cuda")) or (device is None and torch.cuda.is_available())
    if world > 1 and cuda:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def _read_jsonl(path: Path) -> list[dict]:
    """Records of a jsonl file; a last line cut short by a crash is ignored."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return out


def _parts(out: Path, name: str) -> list[Path]:
    return sorted(out.glob(f"{name}.rank*.jsonl"))


def _done(out: Path) -> set:
    paths = set()
    for p in [out / "results.jsonl", *_parts(out, "results")]:
        paths.update(r["path"] for r in _read_jsonl(p) if isinstance(r, dict) and "path" in r)
    return paths


def _merge(out: Path, name: str, drop=frozenset()) -> int:
    """Merge ``name.jsonl`` and ``name.rank*.jsonl`` into ``name.jsonl``: one line per path
    (the first seen, the merged file first), sorted by path; atomic; then remove the parts."""
    parts = _parts(out, name)
    seen = {}
    for p in [out / f"{name}.jsonl", *parts]:
        for r in _read_jsonl(p):
            if isinstance(r, dict) and r.get("path") not in drop:
                seen.setdefault(r.get("path"), r)
    if seen or (out / f"{name}.jsonl").exists():
        atomic_write_text(out / f"{name}.jsonl", "".join(json_text(seen[p], indent=None) + "\n"
                                                         for p in sorted(seen, key=str)))
    for p in parts:
        p.unlink(missing_ok=True)
    return len(seen)


def _repair(path: Path) -> None:
    """Cut a part file back to its last complete line, so that appending cannot glue a new
    record onto a line a crash cut short."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


def _append(f, lines: list) -> None:
    """Append whole lines with one write, then flush and fsync: on disk before the next chunk."""
    f.write("".join(lines))
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def _run_lock(out: Path, rank: int, world: int, device):
    """The exclusive lock of one run on ``out`` (held by rank 0, its outcome shared with every
    rank so that all of them stop together when another run holds it)."""
    handle, owner = None, ""
    if rank == 0:
        handle = open(out / LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            handle = None
    locked = handle is not None
    if world > 1:
        flag = torch.tensor([1 if locked else 0], device=device)
        dist.broadcast(flag, src=0)
        locked = bool(flag.item())
    if not locked:
        who = f" (process {owner})" if owner else ""
        raise UserError(f"{PREFIX}output folder {str(out)!r} is in use by another actcam batch run{who}; wait "
                        "for it to finish or choose another --out")
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # closing releases the lock


def _name(rel: str) -> str:
    # Mirror the input's folders under OUT; the file name is unique for the relative path.
    p = PurePosixPath(rel)
    return (p.parent / output_name(rel)).as_posix()


class _Reader(threading.Thread):
    """Reads the images of a shard ahead of the model (OpenCV decodes without the GIL), at most
    ``depth`` decoded images waiting. Iterating yields ``(path, rgb, None)`` per readable image,
    ``(path, None, error message)`` per unreadable one, then ``(None, None, None)``."""

    def __init__(self, root: Path, paths: list, depth: int, max_pixels: int):
        super().__init__(name="actcam-read", daemon=True)
        self.root, self.paths, self.max_pixels = root, paths, max_pixels
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()

    def run(self):
        for rel in [*self.paths, None]:
            if rel is None:
                item = (None, None, None)
            else:
                try:
                    item = (rel, read_image(self.root / rel, self.max_pixels), None)
                except UserError as exc:
                    item = (rel, None, str(exc).removeprefix(PREFIX))
                except Exception as exc:  # e.g. MemoryError on a huge file: still only this file
                    item = (rel, None, f"cannot read image {rel!r}: {type(exc).__name__}: {exc}")
            if not put_unless_stopped(self.q, item, self.stop):
                return

    def __iter__(self):
        while True:
            item = self.q.get()
            yield item
            if item[0] is None:
                return


def _explain_chunk(explainer: Explainer, chunk: list, out: Path, res, options: ExplainOptions, bar) -> int:
    """Explain a chunk of (rgb, path) in one forward/backward, write the pictures, then append
    and flush one record per image (on disk before the next chunk: a crash loses at most the
    chunk in flight)."""
    preds = explainer.predict([rgb for rgb, _ in chunk], options)
    lines = []
    for (rgb, rel), pred in zip(chunk, preds):
        record = image_record(rgb, rel, pred, dest=out, name=_name(rel), image_weight=options.image_weight,
                              sheet=False)
        lines.append(json_text(record, indent=None) + "\n")
    _append(res, lines)
    if bar is not None:
        bar.update(len(chunk))
    return len(chunk)


def _check_folders(root: Path, out: Path) -> None:
    if not root.is_dir():
        raise UserError(f"{PREFIX}{str(root)!r} is not a directory" if root.exists()
                        else f"{PREFIX}{str(root)!r} does not exist")
    if out.exists() and not out.is_dir():
        raise UserError(f"{PREFIX}output {str(out)!r} exists and is not a directory")
    ours = any((out / n).exists() for n in ("results.jsonl", "run.json", LOCK)) or _parts(out, "results")
    if out.is_dir() and any(out.iterdir()) and not ours:
        raise UserError(f"{PREFIX}output directory {str(out)!r} is not empty and holds no results.jsonl (not an "
                        "actcam batch output); choose another output folder so nothing of yours is overwritten")


def explain_folder(root, out, explainer: Explainer, options: ExplainOptions = ExplainOptions(batch=8), *,
                   progress: bool = False, log=None) -> dict:
    """Explain every image under ``root`` into ``out`` (module docstring).

    Under torchrun, build the explainer on ``rank_device(...)``. Returns this rank's summary
    ``{"rank", "world", "images", "done_before", "explained", "errors", "seconds", "total"}``
    (``total``: lines in results.jsonl after the merge, rank 0 only). ``log`` receives one line
    per skipped file (default: stderr).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    root, out = Path(root), Path(out)
    _check_folders(root, out)
    rank, world = distributed_rank()
    init_here = world > 1 and not dist.is_initialized()
    if init_here:
        if explainer.device.type == "cuda":  # nccl binds each process to its own GPU
            torch.cuda.set_device(explainer.device)
        dist.init_process_group("nccl" if explainer.device.type == "cuda" else "gloo")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _run_lock(out, rank, world, explainer.device):
            return _explain_folder(root, out, explainer, options, rank, world, progress, log)
    finally:
        if init_here and dist.is_initialized():
            dist.destroy_process_group()


def _explain_folder(root: Path, out: Path, explainer: Explainer, options: ExplainOptions, rank: int, world: int,
                    progress: bool, log) -> dict:
    for part in (out / f"results.rank{rank}.jsonl", out / f"errors.rank{rank}.jsonl"):
        _repair(part)
    if rank == 0:  # temporary files of a merge that a crash interrupted
        for name in ("results.jsonl", "errors.jsonl", "run.json", "index.html"):
            remove_stale_temps(out / name)
    # Every rank lists and reads the finished set before anyone writes: the barrier makes all
    # ranks see the same "to do" list, hence disjoint shards.
    images = list_images(root, exclude=out)
    done = _done(out)
    if world > 1:
        dist.barrier()
    todo = [p for p in images if p not in done]
    mine = todo[rank::world]
    bar = progress_bar(len(mine), progress, desc=f"rank {rank}" if world > 1 else None, position=rank)
    start = time.perf_counter()
    explained = errors = 0
    reader = _Reader(root, mine, depth=2 * options.batch, max_pixels=options.max_pixels)
    reader.start()
    try:
        with open(out / f"results.rank{rank}.jsonl", "a", encoding="utf-8") as res, \
                open(out / f"errors.rank{rank}.jsonl", "a", encoding="utf-8") as err:
            chunk = []
            for rel, rgb, problem in reader:
                if problem is not None:  # unreadable: report, skip, go on
                    _append(err, [json_text({"path": rel, "error": problem}, indent=None) + "\n"])
                    log(f"actcam batch: skipped {rel}: {problem}")
                    errors += 1
                    if bar is not None:
                        bar.update(1)
                elif rel is not None:
                    chunk.append((rgb, rel))
                if chunk and (len(chunk) == options.batch or rel is None):
                    explained += _explain_chunk(explainer, chunk, out, res, options, bar)
                    chunk = []
    finally:
        reader.stop.set()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if world > 1:
        dist.barrier()  # every part is complete before rank 0 merges
    total = None
    if rank == 0:
        total = _merge(out, "results")
        ok = _done(out)  # an image that failed before and is fine now is no error any more
        _merge(out, "errors", drop=frozenset(ok))
        write_json(out / "run.json", {**explainer.describe(), "root": str(root)})
        write_index(out, runs_from_batch(out))
    if world > 1:
        dist.barrier()  # nobody exits (or reruns) before the merge is on disk
    return {"rank": rank, "world": world, "images": len(images), "done_before": len(done),
            "explained": explained, "errors": errors, "seconds": seconds, "total": total}
