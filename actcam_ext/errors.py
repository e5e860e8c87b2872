"""Errors of actcam_ext: the bottom layer of the package, importing nothing of it.

Every problem a caller can fix (a missing file, an unknown name, an argument of the wrong type
or out of range) is raised as ``UserError``. It subclasses ``ValueError``, so Python callers
may catch either; the command line prints it as one line on stderr and exits with code 2.
Messages start with ``"actcam: "`` so they read well in a traceback; ``message`` strips that
prefix for places that add their own (the command line names the subcommand instead).

The native ops raise plain ``ValueError`` with the same prefix (C++ ``TORCH_CHECK_VALUE``).
"""

import signal

__all__ = ["UserError", "Terminated", "message", "raise_on_sigterm"]

PREFIX = "actcam: "


class UserError(ValueError):
    """A problem with the caller's input, described in one line that says what to change."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``docker stop`` and systemd send), raised in the main thread so
    that every ``except KeyboardInterrupt`` / ``finally`` that finalises or cleans up after
    Ctrl-C does the same for it. ``signum`` is the signal's number (exit code 128 + signum)."""

    signum = signal.SIGTERM


def raise_on_sigterm() -> None:
    """Turn SIGTERM into ``Terminated`` in the main thread (the command line installs this)."""
    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def message(exc: BaseException) -> str:
    """The error's text without the library prefix."""
    return str(exc).removeprefix(PREFIX)
