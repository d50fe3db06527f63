"""The load generator's event loop: uvloop where it is installed.

The driver shares the machine with the server it measures; every microsecond it spends
in its own loop is one the server does not get, and its own lateness reads as the
server's latency. uvloop roughly halves the loop's overhead (the server runs on it too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on this platform: the standard loop measures just the same
        return None
    return uvloop.new_event_loop
