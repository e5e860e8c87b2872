"""Benchmarks of actcam_ext against the torch chain, the peer libraries and the limit.

Run each as a module from the repository root, e.g. ``python -m bench.ops``; shared helpers
(timing, the torch chain, clip and folder makers) live in ``bench._common``.
"""
