"""``explain_video``: heatmap overlays for every frame of a video, streamed.

Three stages connected by bounded queues, so memory does not grow with the video's length::

    decode thread (cv2.VideoCapture) --q_in--> main thread: batch of frames -> preprocess,
    method, ops.overlay, all on the device --q_out--> encode thread (RGB -> BGR,
    cv2.VideoWriter, mp4v)

OpenCV releases the GIL while it decodes, converts and encodes, and torch while it computes,
so the three stages overlap. Each frame's map is computed at the frame's own size
(``size=(H, W)`` of the method's cam op) and blended with the fused ``ops.overlay``; on a GPU
the frames go up once and the overlays come down once, with no host round trip between model
and overlay. The channel order is swapped by OpenCV (BGR -> RGB into the batch, RGB -> BGR in
the encode thread): torch's flip of a 3-wide uint8 axis is several times slower.

Memory bound (frame buffers): ``q_in`` holds at most ``2 * batch`` decoded frames, the main
thread one batch of frames plus its overlays, ``q_out`` at most 2 batches of overlays, and each
thread one frame in hand: at most ``(2B + B + B + 2B + 2) * H * W * 3`` bytes, i.e.
``(6B + 2)`` frames, about 35 MB for 640x360 at B=8; plus the model's activations for one
batch. docs/video.md has the measurement.

Output: written to a hidden temporary file next to ``out`` (same extension, so OpenCV picks
the same container) and renamed to ``out`` when finalised. An input that cannot be opened
or has no decodable frame leaves no file at all; a video that breaks off mid-way, or a
Ctrl-C / SIGTERM, keeps every frame processed so far in a finalised file and the summary says
how many frames were lost or left unread.

Frame size: ``out`` has the input's frame size. The mp4v encoder only takes even sizes, so an
odd-sized input is written to an ``.avi`` with OpenCV's own MJPEG encoder (exact size); to an
``.mp4``/``.mov`` it is cropped by its last column and/or row, and the summary says so. Frames
whose size differs from the first frame's (a stream that changes resolution) are resized to
the first frame's size, and the summary counts them.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import ops
from .._files import remove_stale_temps, temp_sibling
from .._progress import progress_bar
from ..errors import PREFIX, UserError
from ..methods import HEATMAP_METHODS
from ._threads import put_unless_stopped
from .explainer import Explainer
from .options import VideoOptions

__all__ = ["explain_video", "VideoSummary"]

_END = object()  # end-of-stream marker on both queues


@dataclass
class VideoSummary:
    """What ``explain_video`` did. ``lost`` = frames the container announced but that could not
    be decoded (a broken file); ``unread`` = frames not processed because of an interrupt."""

    out: str
    frames: int = 0            # frames written to ``out``
    expected: int | None = None  # the container's frame count (None when it does not say)
    lost: int = 0
    unread: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False
    signal: int = 0              # the signal that interrupted the run (SIGINT or SIGTERM), 0 if none
    decode_error: str | None = None
    method: str = ""
    layer: str = ""
    cropped_from: tuple | None = None  # (W, H) of the input when the output had to drop a column/row
    resized: int = 0             # frames resized to the first frame's size

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        s = (f"{self.frames} frames {self.width}x{self.height} @ {self.fps:g} fps in {self.seconds:.1f} s "
             f"({self.frames_per_second:.2f} frames/s) -> {self.out}")
        if self.lost:
            s += f"; input broke off after {self.frames} of {self.expected} frames: {self.lost} frames lost"
        if self.cropped_from:
            w, h = self.cropped_from
            s += (f"; the input is {w}x{h}, an odd size the mp4v encoder cannot store: the output is cropped "
                  f"to {self.width}x{self.height} (an .avi output keeps {w}x{h})")
        if self.resized:
            s += (f"; {self.resized} frames had another size than the first and were resized to "
                  f"{self.width}x{self.height}")
        if self.interrupted:
            s += f"; interrupted: output finalised with the {self.frames} frames done"
            if self.unread:
                s += f", {self.unread} frames not processed"
        return s

    @property
    def notable(self) -> bool:
        """Whether the output differs from a plain run in a way a user must be told about."""
        return bool(self.lost or self.interrupted or self.cropped_from or self.resized)


class _Decoder(threading.Thread):
    """Reads frames into ``q`` (bounded: blocks when the consumer is behind) until the end,
    a decode error, or ``stop``. Puts ``_END`` last."""

    def __init__(self, cap, first, q: queue.Queue, stop: threading.Event):
        super().__init__(name="actcam-decode", daemon=True)
        self.cap, self.first, self.q, self.stop = cap, first, q, stop
        self.count = 0
        self.resized = 0  # frames of another size than the first, resized to it
        self.error: str | None = None

    def _put(self, item) -> bool:
        return put_unless_stopped(self.q, item, self.stop)

    def run(self):
        try:
            frame = self.first
            while frame is not None:
                if not self._put(frame):
                    return
                self.count += 1
                try:
                    ok, frame = self.cap.read()
                except cv2.error as exc:  # a damaged stream may raise instead of returning False
                    self.error = str(exc).strip().splitlines()[-1]
                    return
                if not ok:
                    frame = None
                elif frame.shape != self.first.shape:
                    # A stream that changes resolution: keep one size (the batch, the writer).
                    h, w = self.first.shape[:2]
                    frame = cv2.resize(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR),
                                       (w, h), interpolation=cv2.INTER_AREA)
                    self.resized += 1
        finally:
            self._put(_END)


class _Encoder(threading.Thread):
    """Writes RGB frames from ``q`` (as BGR) until ``_END``. Never stops early: every overlay
    computed is written, so an interrupted run still has all its finished frames."""

    def __init__(self, writer, q: queue.Queue, size: tuple):
        super().__init__(name="actcam-encode", daemon=True)
        self.writer, self.q = writer, q
        self.width, self.height = size
        self.count = 0
        self.error: BaseException | None = None

    def run(self):
        while True:
            item = self.q.get()
            if item is _END:
                return
            try:
                for frame in item:
                    self.writer.write(cv2.cvtColor(frame[:self.height, :self.width], cv2.COLOR_RGB2BGR))
                    self.count += 1
            except BaseException as exc:  # reported by the main thread
                self.error = exc


def _open(inp: str):
    """(capture, first frame, fps, expected count) or a UserError; nothing is written yet."""
    if not os.path.exists(inp):
        raise UserError(f"{PREFIX}video {inp!r} does not exist")
    if os.path.isdir(inp):
        raise UserError(f"{PREFIX}video {inp!r} is a directory, expected a video file")
    if not os.access(inp, os.R_OK):
        raise UserError(f"{PREFIX}cannot read video {inp!r}: permission denied")
    cap = cv2.VideoCapture(inp)
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise UserError(f"{PREFIX}cannot decode video {inp!r}: not a video OpenCV can read, or corrupt "
                          "(an .mp4 cut short loses its index and cannot be read at all)")
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        cap.release()
        raise UserError(f"{PREFIX}video {inp!r} decodes to {first.dtype} frames of shape {list(first.shape)}; "
                          "actcam needs 8-bit colour frames")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not np.isfinite(fps) or fps <= 0:
        cap.release()
        raise UserError(f"{PREFIX}video {inp!r} has no frame rate in its header; the output could not keep its timing")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return cap, first, float(fps), (count if count > 0 else None)


def explain_video(inp, out, explainer: Explainer, options: VideoOptions = VideoOptions(), *,
                  progress: bool = False) -> VideoSummary:
    """Write ``out``: ``inp`` with each frame's heatmap overlaid (same frame count, size, fps).

    explainer: an ``Explainer`` whose method makes heatmaps (CAM, Grad-CAM, Grad-CAM++).
    Raises UserError for unusable input or options (then no output file exists). A
    KeyboardInterrupt is absorbed: the output is finalised and the summary says so.
    """
    if not isinstance(explainer, Explainer):
        raise UserError(f"{PREFIX}explainer must be an Explainer, got {type(explainer).__name__}")
    if explainer.method_name not in HEATMAP_METHODS:
        raise UserError(f"{PREFIX}{explainer.method_name} makes gradient pictures, not heatmaps to overlay; use "
                        f"{', '.join(HEATMAP_METHODS)} for video")
    inp, out = os.fspath(inp), Path(out)
    if out.is_dir():
        raise UserError(f"{PREFIX}output {str(out)!r} is a directory; give a video file name such as out.mp4")
    if not out.suffix:
        raise UserError(f"{PREFIX}output {str(out)!r} has no extension; use .mp4 (or .avi, .mov)")
    if os.path.realpath(out) == os.path.realpath(inp) or (out.exists() and os.path.exists(inp)
                                                          and os.path.samefile(out, inp)):
        raise UserError(f"{PREFIX}output {str(out)!r} is the input video; choose another output file (the input "
                        "would be replaced)")
    batch = options.batch

    cap, first, fps, expected = _open(inp)
    h, w = first.shape[:2]
    tmp = temp_sibling(out, keep_suffix=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        open(tmp, "wb").close()  # the real reason when OUT cannot be written (permissions, read-only, full)
    except OSError as exc:
        cap.release()
        raise UserError(f"{PREFIX}cannot write video {str(out)!r}: {exc.strerror or exc}") from None
    odd = (w % 2, h % 2) != (0, 0)
    if odd and out.suffix.lower() == ".avi":
        # OpenCV's own MJPEG/AVI encoder takes any size; FFmpeg's mp4v takes even sizes only.
        writer = cv2.VideoWriter(str(tmp), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        ow, oh = w, h
    else:
        ow, oh = w - w % 2, h - h % 2
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (ow, oh))
    if not writer.isOpened():
        cap.release()
        tmp.unlink(missing_ok=True)
        raise UserError(f"{PREFIX}cannot write video {str(out)!r}: OpenCV has no mp4v writer for {out.suffix!r} files; "
                        "use .mp4, .avi or .mov")

    summary = VideoSummary(out=str(out), expected=expected, width=ow, height=oh, fps=fps,
                           method=explainer.method_name, layer=explainer.layer,
                           cropped_from=(w, h) if (ow, oh) != (w, h) else None)
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=options.queue_batches * batch)  # single frames
    q_out: queue.Queue = queue.Queue(maxsize=options.queue_batches)           # lists of frames (one batch)
    decoder, encoder = _Decoder(cap, first, q_in, stop), _Encoder(writer, q_out, (ow, oh))
    bar = progress_bar(expected, progress, unit="frame")
    start = time.perf_counter()
    decoder.start()
    encoder.start()
    done = False
    processed = 0
    try:
        last_map = None
        ended = False
        while not ended:
            frames = []
            item = q_in.get()
            while item is not _END:  # up to `batch` frames
                frames.append(item)
                if len(frames) == batch:
                    break
                item = q_in.get()  # full batches: the decoder always delivers a frame or _END
            ended = item is _END
            if not frames:
                continue
            if encoder.error is not None:
                raise encoder.error
            overlays, last_map = _process(explainer, frames, processed, options, last_map)
            q_out.put(overlays)
            processed += len(frames)
            if bar is not None:
                bar.update(len(frames))
        done = True
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as errors.Terminated
        summary.interrupted = True
        summary.signal = int(getattr(exc, "signum", signal.SIGINT))
    finally:
        stop.set()  # the decoder stops at its next frame
        try:
            q_out.put(_END)
            encoder.join()
            decoder.join()
        except KeyboardInterrupt as exc:  # a second signal while finishing: still finalise below
            summary.interrupted = True
            summary.signal = summary.signal or int(getattr(exc, "signum", signal.SIGINT))
            encoder.join()
        writer.release()
        cap.release()
        if bar is not None:
            bar.close()
        summary.frames = encoder.count
        summary.resized = decoder.resized
        summary.seconds = time.perf_counter() - start
        ok = (done or summary.interrupted) and encoder.error is None and encoder.count > 0
        if ok:
            os.replace(tmp, out)
        else:  # an error in the model or the writer: no half-written output
            tmp.unlink(missing_ok=True)
    if encoder.error is not None:
        raise UserError(f"{PREFIX}cannot write video {str(out)!r}: {encoder.error}")
    if done:
        summary.decode_error = decoder.error
        if expected is not None and decoder.count < expected:
            summary.lost = expected - decoder.count
    elif expected is not None:
        summary.unread = max(0, expected - summary.frames)
    return summary


def _process(explainer: Explainer, frames: list, first_index: int, options: VideoOptions, last_map):
    """Overlays (RGB uint8 numpy frames) of one batch of BGR frames; returns them and the last
    map used."""
    dev = explainer.device
    batch = np.empty((len(frames), *frames[0].shape), dtype=np.uint8)
    for frame, rgb_frame in zip(frames, batch):
        cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb_frame)
    rgb = torch.from_numpy(batch).to(dev, non_blocking=True)  # one upload per batch
    # Frames whose index is a multiple of `every` get their own map; the others reuse the map
    # of the last explained frame before them (possibly from the previous batch).
    fresh = [j for j in range(len(frames)) if (first_index + j) % options.every == 0]
    explained = rgb if len(fresh) == len(frames) else rgb[fresh]
    maps_fresh = explainer.heatmaps(explained, options.target) if fresh else None
    if len(fresh) == len(frames):
        maps = maps_fresh
    else:
        parts, k = [], -1
        for j in range(len(frames)):
            if k + 1 < len(fresh) and fresh[k + 1] == j:
                k += 1
            parts.append(maps_fresh[k] if k >= 0 else last_map)
        maps = torch.stack(parts)
    overlays = ops.overlay(maps, rgb, options.image_weight).cpu().numpy()
    return list(overlays), maps[-1]
