"""The ``actcam`` command line: the top layer; each subcommand is one module.

A subcommand module has ``register(subparsers)`` (adds its parser, whose ``func`` runs
it) and imports what it needs from the library; options shared by several subcommands come
from ``_args`` (argparse parent parsers), so each has one spelling, type and help text.
"""

from .main import build_parser, main, run_command

__all__ = ["main", "build_parser", "run_command"]
