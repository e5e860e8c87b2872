"""Subcommands of the `actcam` command line, one module each (see actcam_ext/cli.py)."""
