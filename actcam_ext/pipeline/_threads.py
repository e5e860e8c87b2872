"""Thread helpers shared by the streaming pipelines."""

from __future__ import annotations

import queue
import threading

__all__ = ["put_unless_stopped"]


def put_unless_stopped(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` on the bounded queue ``q``, waiting while it is full, unless ``stop`` is set
    first (the consumer has gone away); True when the item was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
