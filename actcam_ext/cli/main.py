"""The ``actcam`` command: the parser and the one place where errors become exit codes.

Exit codes: 0 success; 1 finished but the input was incomplete (a video that broke off); 2 a
user error (one line on stderr: bad option, missing file, unknown name, a full disk), never a
traceback; 130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM); 141 stdout closed by the
reader (``actcam ... | head``). SIGINT and SIGTERM are handled alike: outputs are finalised
or removed, never left half-written.
"""

from __future__ import annotations

import os
import sys

from .._version import __version__
from ..errors import Terminated, UserError, message, raise_on_sigterm
from . import activations, batch, evaluate, explain, export, info, video
from ._args import Parser

__all__ = ["build_parser", "main", "run_command", "SUBCOMMANDS"]

# torch's CPU allocator advises buffers of 2 MiB or more into transparent huge pages when this
# variable is 1. It reads it once, at the process's first tensor allocation.
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"

SUBCOMMANDS = (info, explain, video, batch, evaluate, activations, export)


def build_parser() -> Parser:
    parser = Parser(prog="actcam", description="Class-activation heatmaps for PyTorch models.")
    parser.add_argument("--version", action="version", version=f"actcam_ext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for module in SUBCOMMANDS:
        module.register(sub)
    parser.commands = sub.choices
    return parser


def _parse(parser: Parser, argv):
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand, which knows the options a user may have meant
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def use_huge_pages() -> None:
    """Turn on torch's huge-page allocation for this process where the kernel offers it, unless
    the user set the variable: a batch's activations are tens of MiB, mapped afresh at every
    forward, and fault in far fewer 2 MiB pages than 4 KiB ones (docs/video.md#huge-pages).
    Only the command's own process calls this, before any tensor exists: in a library it would
    change its host process's allocator behind the host's back."""
    try:
        with open(_THP_SETTING) as f:
            offered = "[never]" not in f.read()
    except OSError:  # not Linux, or a kernel without transparent huge pages
        return
    if offered:
        os.environ.setdefault(HUGE_PAGES_VARIABLE, "1")


def run_command() -> int:
    """The ``actcam`` executable: huge pages (``use_huge_pages``), then ``main``."""
    use_huge_pages()
    return main()


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = _parse(build_parser(), argv)
    raise_on_sigterm()
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
        print(f"actcam {args.command}: error: {message(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"actcam {args.command}: terminated", file=sys.stderr)
        return 128 + Terminated.signum
    except KeyboardInterrupt:
        print(f"actcam {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the disk filled up, a folder became unwritable: say so in one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"actcam {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
