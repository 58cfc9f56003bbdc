"""Find the library's request object in the caller's frames, on the fault path only.

Some hooks that see a fault are not handed the request (aiohttp's
``_release`` gets a key and a protocol). Passing the request along on every
request would cost the happy path; instead, when - and only when - a fault is
being recorded, we look up a few frames for the object the library itself is
holding. Bounded in depth, read-only, and any failure just means the snapshot
has no URL.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["find_local", "raised_through"]


def find_local(accept: Callable[[str, Any], bool], *, skip: int = 1, max_depth: int = 12) -> Any:
    """The first local ``value`` (by name) up the stack for which ``accept(name, value)``."""
    frame: FrameType | None
    try:
        frame = sys._getframe(skip + 1)
    except ValueError:
        return None
    depth = 0
    while frame is not None and depth < max_depth:
        if frame.f_globals.get("__name__", "").startswith("seedance_otel"):
            frame = frame.f_back  # our own frames: not counted, no locals built
            continue
        depth += 1
        for name, value in frame.f_locals.items():
            try:
                if accept(name, value):
                    return value
            except Exception:  # an odd object's attribute access must not matter
                continue
        frame = frame.f_back
    return None


_OWNER_NAMES = ("self", "conn", "connection", "protocol")


def raised_through(exc: BaseException, owns: Callable[[Any], bool]) -> bool:
    """Whether ``exc`` was raised through a frame working on our connection.

    ``sys.exc_info()`` in a close hook is whatever the caller is handling: the
    library's own failure when it closes a connection after an error, but also
    an unrelated application exception when the application makes or closes a
    request inside its own ``except`` block. Only the former is this
    connection's fault. Fault path only.
    """
    tb = exc.__traceback__
    depth = 0
    # The catching frame comes first and is normally the owner: look no further
    # than a few frames (each f_locals builds a dict).
    while tb is not None and depth < 8:
        local_vars = tb.tb_frame.f_locals
        for name in _OWNER_NAMES:
            value = local_vars.get(name)
            if value is not None:
                try:
                    if owns(value):
                        return True
                except Exception:
                    pass
        tb = tb.tb_next
        depth += 1
    return False
