"""The `actcam` command line.

Each subcommand lives in its own module that exposes ``register(subparsers)``: it adds its
parser and sets ``func`` (called with the parsed args, returns the exit code). Errors a user
can fix (a missing file, an unknown model) are raised as ``UserError`` and printed as one
line on stderr with exit code 2, never as a traceback.
"""

import argparse
import importlib
import os
import sys

import torch

from . import __version__
from .ops import native_available

OPS = ("cam", "gradcampp_weights", "overlay")

# Modules that register subcommands; a module that is not there yet is skipped.
SUBCOMMAND_MODULES = ("actcam_ext.commands.explain", "actcam_ext.commands.video", "actcam_ext.commands.batch",
                      "actcam_ext.commands.evaluate")


class UserError(ValueError):
    """A problem with the user's input: one line on stderr and exit code 2 from the command
    line; a ValueError for Python callers (ac.explain raises it too)."""


def _info(args) -> int:
    print(f"actcam_ext {__version__} (torch {torch.__version__})")
    for device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            kernel = "native kernels built" if native_available("cuda") else "no native kernels"
            print(f"  cuda: no GPU visible ({kernel})")
            continue
        path = "native fused kernels" if native_available(device) else "pure-torch fallback"
        print(f"  {device}: {path} for {', '.join(OPS)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actcam", description="Class-activation heatmaps for PyTorch CNNs.")
    parser.add_argument("--version", action="version", version=f"actcam_ext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="show the ops and which backend (native or fallback) serves each device")
    info.set_defaults(func=_info)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but one of its imports is missing: a real error
                raise
            continue
        module.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # `actcam demo | head`: the reader has what it wanted. Exit as a Unix tool killed by
        # SIGPIPE would, without a traceback; stdout goes to devnull so the exit flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    except UserError as exc:
        print(f"actcam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"actcam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Under `python -m actcam_ext.cli` this file runs as __main__, a second copy of the module:
    # run the package's copy, whose UserError is the class the subcommands raise.
    from actcam_ext.cli import main as _package_main
    sys.exit(_package_main())
