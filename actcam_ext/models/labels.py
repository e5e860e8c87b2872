"""Class names. The 1000 ImageNet-1k names (index = class id of the usual ILSVRC-2012 models,
as torchvision lists them) ship as package data in ``imagenet_classes.txt`` and are read on
first use."""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["imagenet_labels", "labels_for"]


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(text.splitlines())
    assert len(names) == 1000, "imagenet_classes.txt must hold 1000 names"
    return names


def labels_for(num_classes: int) -> tuple[str, ...] | None:
    """Names for a classifier with ``num_classes`` outputs: ImageNet's for 1000, else None
    (the caller then says "class N")."""
    return imagenet_labels() if num_classes == 1000 else None
