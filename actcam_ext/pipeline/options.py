"""The options of the pipelines, checked once when they are made."""

from __future__ import annotations

from dataclasses import dataclass

from .._validate import class_ids, fraction, positive_int
from ..errors import PREFIX, UserError
from ..images import MAX_PIXELS

__all__ = ["ExplainOptions", "VideoOptions"]


@dataclass(frozen=True)
class ExplainOptions:
    """What ``explain`` and ``explain_folder`` make of each image.

    top_k: explain each image's K best classes; targets: class ids explained for every image
    instead (a class given twice gets one map); threshold: box threshold relative to each map's
    maximum (CAM paper: 0.2); image_weight: weight of the image in the overlay blend; batch:
    images per forward/backward (images of any sizes mix: each is resized to the model's input
    and each map is made at its own image's size); max_pixels: image files above this many
    pixels are refused (``images.MAX_PIXELS``); min_score: for detectors, the detections
    explained are those scoring at least this (the K best of them, of the ``targets`` labels
    when given).
    """

    top_k: int = 1
    targets: tuple | None = None
    threshold: float = 0.2
    image_weight: float = 0.5
    batch: int = 1
    max_pixels: int = MAX_PIXELS
    min_score: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "top_k", positive_int(self.top_k, "top_k"))
        if self.targets is not None:
            object.__setattr__(self, "targets", class_ids(self.targets, "targets"))
        object.__setattr__(self, "threshold", fraction(self.threshold, "threshold"))
        object.__setattr__(self, "image_weight", fraction(self.image_weight, "image_weight"))
        object.__setattr__(self, "batch", positive_int(self.batch, "batch"))
        object.__setattr__(self, "max_pixels", positive_int(self.max_pixels, "max_pixels"))
        object.__setattr__(self, "min_score", fraction(self.min_score, "min_score"))


@dataclass(frozen=True)
class VideoOptions:
    """What ``explain_video`` does per frame.

    batch: frames per model call; every: explain every K-th frame and reuse its map for the K-1
    frames after it; image_weight: weight of the frame in the blend; target: one class id
    explained in every frame (None: each frame's top-1 class); queue_batches: capacity of each
    queue between the threads, in batches (the memory bound).
    """

    batch: int = 8
    every: int = 1
    image_weight: float = 0.5
    target: int | None = None
    queue_batches: int = 2

    def __post_init__(self):
        object.__setattr__(self, "batch", positive_int(self.batch, "batch"))
        object.__setattr__(self, "every", positive_int(self.every, "every"))
        object.__setattr__(self, "image_weight", fraction(self.image_weight, "image_weight"))
        if self.target is not None:
            ids = class_ids(self.target, "target")
            if len(ids) != 1:
                raise UserError(f"{PREFIX}target must be one class id for a video, got {self.target!r}")
            object.__setattr__(self, "target", ids[0])
        object.__setattr__(self, "queue_batches", positive_int(self.queue_batches, "queue_batches"))

