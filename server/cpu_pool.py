"""Where CPU-heavy background work runs: a worker process at a lower CPU priority.

Rendering a snapshot or drawing a thumbnail is pure Python for tens of milliseconds. In a
thread of the server it holds the GIL against the event loop, and every live room's
fan-out waits (bench/README.md measured the p99 of 1,000 editors doubling in snapshot
waves). In a process of its own it holds nothing of the server's; niced, it also yields the
CPU to the event loop whenever both want the same core, and takes what the rooms leave.

:class:`ProcessCpuPool` is that process (started with the server, from a forkserver that has
the rendering modules imported already, so a restart costs milliseconds).
:class:`ThreadCpuPool` runs the same functions in threads: for tests of pure logic, and
for ``SNAPSHOT_WORKER_PROCESSES=0``. Jobs are top-level functions of picklable values
(``server.render_jobs``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from types import TracebackType
from typing import Protocol, Self, TypeVar, TypeVarTuple

from core.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_PRELOAD = ["server.render_jobs"]


class CpuPoolBroken(Unavailable):
    code = "cpu_pool_broken"
    title = "Background worker process lost"


class CpuPool(Protocol):
    async def run(self, job: Callable[[*Ts], T], *args: *Ts) -> T:
        """``job(*args)`` away from the event loop; raises what the job raises."""


class ThreadCpuPool:
    async def run(self, job: Callable[[*Ts], T], *args: *Ts) -> T:
        return await asyncio.to_thread(job, *args)


class ProcessCpuPool:
    """``processes`` worker processes at ``nice`` (0-19) above the server's niceness."""

    def __init__(self, *, processes: int = 1, nice: int = 10) -> None:
        if processes < 1:
            raise ValueError("a process pool needs at least one process")
        self._processes = processes
        self._nice = nice
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        self.restarts = 0

    async def __aenter__(self) -> Self:
        # Start the forkserver and the worker now, during start-up: the forkserver imports
        # the rendering modules at the server's own priority, which would otherwise stall
        # the live rooms for a few hundred milliseconds when the first snapshot comes.
        await self.run(os.getpid)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            # Jobs still queued are snapshots the registry already wrote or gave up on.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def run(self, job: Callable[[*Ts], T], *args: *Ts) -> T:
        executor = self._ensure_executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, partial(job, *args))
        except BrokenProcessPool as exc:
            # The worker died (killed, out of memory): start a new one for the next job;
            # this one is retried by its caller, as any unavailable dependency is.
            self._replace(executor)
            raise CpuPoolBroken("the background worker process died; retried later") from exc

    def _ensure_executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise CpuPoolBroken("the background worker pool is closed")
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._executor = ProcessPoolExecutor(
                max_workers=self._processes,
                mp_context=context,
                initializer=_start_worker,
                initargs=(os.getpid(), self._nice),
            )
        return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is not broken:
            return  # replaced already by another job that saw it break
        self._executor = None
        self.restarts += 1
        log.warning("the background worker process died; starting a new one")
        broken.shutdown(wait=False, cancel_futures=True)


def _start_worker(server_pid: int, nice: int) -> None:
    if nice:
        os.nice(nice)
    # A worker holds its own job queue open, so it would wait forever for work from a server
    # that was killed (kill -9, out of memory): it watches the server and exits with it.
    threading.Thread(target=_exit_with, args=(server_pid,), daemon=True).start()


def _exit_with(server_pid: int) -> None:
    try:
        # A pidfd names this very process, even if its pid is reused after it dies.
        handle = os.pidfd_open(server_pid)
    except OSError:  # no pidfd (old kernel): look every second
        while _alive(server_pid):
            time.sleep(1.0)
    else:
        select.select([handle], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
