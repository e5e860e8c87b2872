"""The one version string of actcam_ext (setup.py reads it from this file)."""

__version__ = "0.2.0"
