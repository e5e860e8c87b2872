"""``actcam_ext.batch``: explain every image under a folder, resumable, sharded under torchrun.

Layout of ``OUT``::

    results.jsonl            one explain() image record per line, sorted by path, each image once
    results.rank{r}.jsonl    rank r's part while a run is going (merged and removed at the end)
    errors.jsonl             {"path", "error"} for files that could not be read (skipped)
    <relative dir>/<name>_<rank>_<class>_{heatmap.png,overlay.jpg}   per image

Records have exactly the fields of ``explain``'s per-image record (``path`` is relative to
DIR, picture paths relative to OUT). A reader thread decodes images ahead of the model (at
most ``2 * batch`` waiting); ``batch`` readable images go through one forward/backward, each
map made at its own image's size. Every rank appends the chunk's lines and flushes them as
soon as the chunk is done, so a crash loses at most the chunk in flight; a rerun reads
``results.jsonl`` and any ``results.rank*.jsonl`` left over (from any number of ranks) and
skips those images.

Sharding: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is
initialised with gloo on CPU, nccl on GPU; the sorted list of images still to do is split by
index (image i goes to rank i mod world), so the shards are disjoint and cover everything.
After a barrier, rank 0 merges all parts (deduplicated by path) into ``results.jsonl``,
written to a temporary file and renamed, then removes the parts.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

__all__ = ["list_images", "explain_folder"]


def _user_error(message: str) -> Exception:
    from .cli import UserError  # lazily, as in explain.py
    return UserError(message)


def list_images(root, exclude=None) -> list[str]:
    """Paths (relative to root, '/'-separated, sorted) of the image files under root, recursively.

    Common extensions, case-insensitive; hidden files and folders are skipped, and so is
    ``exclude`` (the output folder when it lies inside root).
    """
    from .explain import _IMAGE_EXTS
    root = Path(root)
    ex = Path(exclude).resolve() if exclude is not None else None
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (d / n).resolve() != ex)
        for n in filenames:
            if not n.startswith(".") and Path(n).suffix.lower() in _IMAGE_EXTS:
                found.append((d / n).relative_to(root).as_posix())
    return sorted(found)


def _dist():
    """(rank, world, group initialised here?) from torchrun's environment; (0, 1, False) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    return int(os.environ["RANK"]), world, True


def _read_jsonl(path: Path) -> list[dict]:
    """Records of a jsonl file; a last line cut short by a crash is ignored."""
    out = []
    try:
        with open(path) as f:
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
        paths.update(r["path"] for r in _read_jsonl(p) if "path" in r)
    return paths


def _merge(out: Path, name: str, drop=frozenset()) -> int:
    """Merge ``name.jsonl`` and ``name.rank*.jsonl`` into ``name.jsonl``: one line per path
    (the first seen, the merged file first), sorted by path; atomic; then remove the parts."""
    parts = _parts(out, name)
    seen = {}
    for p in [out / f"{name}.jsonl", *parts]:
        for r in _read_jsonl(p):
            if r.get("path") not in drop:
                seen.setdefault(r.get("path"), r)
    if seen or (out / f"{name}.jsonl").exists():
        tmp = out / f".{name}.jsonl.tmp"
        with open(tmp, "w") as f:
            for path in sorted(seen, key=str):
                f.write(json.dumps(seen[path]) + "\n")
        os.replace(tmp, out / f"{name}.jsonl")
    for p in parts:
        p.unlink(missing_ok=True)
    return len(seen)


def _stem(rel: str) -> str:
    # Mirror DIR's folders under OUT; keep the extension in the name (a.jpg and a.png differ).
    from .explain import _stem as clean
    p = Path(rel)
    name = clean(p.name.replace(".", "_"))
    return (p.parent / name).as_posix() if str(p.parent) != "." else name


class _Reader(threading.Thread):
    """Reads the images of a shard ahead of the model (OpenCV decodes without the GIL), at
    most ``depth`` decoded images waiting. Iterating yields ``(path, rgb, None)`` per readable
    image, ``(path, None, error message)`` per unreadable one, then ``(None, None, None)``."""

    def __init__(self, root: Path, paths: list, depth: int):
        super().__init__(name="actcam-read", daemon=True)
        self.root, self.paths = root, paths
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()

    def run(self):
        from .cli import UserError
        from .explain import read_image
        from .video import put_unless_stopped
        for rel in [*self.paths, None]:
            if rel is None:
                item = (None, None, None)
            else:
                try:
                    item = (rel, read_image(self.root / rel), None)
                except UserError as exc:
                    item = (rel, None, str(exc))
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


def _explain_chunk(explainer, chunk: list, out: Path, res, top_k, targets, bar) -> int:
    """Explain a chunk of (rgb, path) in one forward/backward, write the pictures, then append
    and flush one record per image (on disk before the next chunk: a crash loses at most the
    chunk in flight)."""
    stems = [_stem(rel) for _, rel in chunk]
    for stem in stems:
        (out / stem).parent.mkdir(parents=True, exist_ok=True)
    entries = explainer.run(chunk, top_k=top_k, targets=targets, dest=out, prefix="", stems=stems,
                            sheets=False, batch=len(chunk))
    for entry in entries:
        res.write(json.dumps(entry) + "\n")
        if bar is not None:
            bar.update(1)
    res.flush()
    return len(entries)


def explain_folder(root, out, method: str = "gradcam", model=None, layer=None, *, top_k: int = 1,
                   targets=None, device=None, threshold: float = 0.2, image_weight: float = 0.5,
                   batch: int = 8, progress: bool = False, log=None) -> dict:
    """Explain every image under ``root`` into ``out`` (module docstring); returns a summary
    ``{"rank", "world", "images", "done_before", "explained", "errors", "seconds", "total"}``
    for this rank (``total``: lines in results.jsonl after the merge, rank 0 only).
    batch: images per forward/backward (any sizes mix; each map is made at its image's size)."""
    from .explain import _check_options, _Explainer, _model_and_preprocess

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    targets = _check_options(top_k, targets, threshold, image_weight, batch)
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise _user_error(f"{str(root)!r} is not a directory" if root.exists() else f"{str(root)!r} does not exist")
    if out.exists() and not out.is_dir():
        raise _user_error(f"output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not ((out / "results.jsonl").exists() or _parts(out, "results")):
        raise _user_error(f"output directory {str(out)!r} is not empty and holds no results.jsonl (not an actcam "
                          "batch output); choose another --out so nothing of yours is overwritten")

    rank, world, init_here = _dist()
    import torch
    import torch.distributed as dist
    if init_here:
        cuda = device is not None and str(device).startswith("cuda") or (device is None and torch.cuda.is_available())
        if cuda:  # one GPU per process on each node
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Every rank lists and reads the finished set before anyone writes: the barrier makes
        # all ranks see the same "to do" list, hence disjoint shards.
        images = list_images(root, exclude=out)
        done = _done(out)
        if world > 1:
            dist.barrier()
        todo = [p for p in images if p not in done]
        mine = todo[rank::world]
        net, pre, dev, name = _model_and_preprocess(model, None, device)
        explainer = _Explainer(net, pre, method, layer, dev, threshold, image_weight)
        bar = None
        if progress and len(mine) > 3:
            from tqdm import tqdm
            bar = tqdm(total=len(mine), unit="img", file=sys.stderr, leave=False, position=rank,
                       desc=f"rank {rank}" if world > 1 else None)
        head = {"model": name, "method": explainer.method, "layer": explainer.layer}
        start = time.perf_counter()
        explained = errors = 0
        reader = _Reader(root, mine, depth=2 * batch)
        reader.start()
        try:
            with open(out / f"results.rank{rank}.jsonl", "a") as res, \
                    open(out / f"errors.rank{rank}.jsonl", "a") as err:
                chunk = []
                for rel, rgb, problem in reader:
                    if problem is not None:  # unreadable: report, skip, go on
                        err.write(json.dumps({"path": rel, "error": problem}) + "\n")
                        err.flush()
                        log(f"actcam batch: skipped {rel}: {problem}")
                        errors += 1
                        if bar is not None:
                            bar.update(1)
                    elif rel is not None:
                        chunk.append((rgb, rel))
                    if chunk and (len(chunk) == batch or rel is None):
                        explained += _explain_chunk(explainer, chunk, out, res, top_k, targets, bar)
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
            (out / "run.json").write_text(json.dumps(dict(head, root=str(root)), indent=2) + "\n")
        if world > 1:
            dist.barrier()  # nobody exits (or reruns) before the merge is on disk
        return {"rank": rank, "world": world, "images": len(images), "done_before": len(done),
                "explained": explained, "errors": errors, "seconds": seconds, "total": total}
    finally:
        if init_here and dist.is_initialized():
            dist.destroy_process_group()
