"""Pipelines: from image files, folders and videos to pictures and records.

``Explainer`` (pure compute: images in, predictions out) is shared by the three pipelines,
which do not import each other: ``explain`` (a list of images -> a results folder), ``folder``
(a folder tree -> a resumable, sharded ``results.jsonl``) and ``video`` (a video -> a video).
"""

from .explain import demo, explain
from .explainer import Explainer, ImagePrediction
from .folder import explain_folder
from .options import ExplainOptions, VideoOptions
from .video import VideoSummary, explain_video

__all__ = ["Explainer", "ImagePrediction", "ExplainOptions", "VideoOptions", "explain", "demo",
           "explain_folder", "explain_video", "VideoSummary"]
