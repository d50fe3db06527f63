"""CPU and memory of processes, read from /proc (Linux), and which process listens on a port.

The parsers take the files' text, so they are tested without a live /proc; the readers around
them skip processes that vanish or belong to someone else (a benchmark must not crash because
a worker restarted, it must say the numbers stopped).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

_LISTEN: Final = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column
PROC: Final = Path("/proc")


def parse_cpu_ticks(stat: str) -> int:
    """utime + stime from ``/proc/PID/stat``, in clock ticks.

    The command name (field 2) is in parentheses and may hold spaces or parentheses itself,
    so fields are counted after its last ``)``: state is field 3, utime 14, stime 15.
    """
    _, paren, rest = stat.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 13:
        raise ValueError("not a /proc/PID/stat line")
    return int(fields[11]) + int(fields[12])


def parse_parent_pid(stat: str) -> int:
    """The parent's pid (field 4) from ``/proc/PID/stat``."""
    _, paren, rest = stat.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 2:
        raise ValueError("not a /proc/PID/stat line")
    return int(fields[1])


def with_descendants(pids: list[int], proc: Path = PROC) -> list[int]:
    """``pids`` and every process below them: a server's worker processes are its cost too."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = parse_parent_pid((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # gone since the listing
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return sorted(found)


def parse_rss_kib(status: str) -> int | None:
    """VmRSS from ``/proc/PID/status`` in KiB; None for a process without memory (a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def parse_listening_inodes(table: str, port: int) -> set[int]:
    """Socket inodes listening on ``port`` in a ``/proc/net/tcp`` or ``tcp6`` table."""
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        _, _, port_hex = fields[1].rpartition(":")
        if int(port_hex, 16) == port:
            inodes.add(int(fields[9]))
    return inodes


def find_listening_pids(port: int, proc: Path = PROC) -> list[int]:
    """Processes holding a socket that listens on ``port`` (uvicorn's workers share it)."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            inodes |= parse_listening_inodes((proc / "net" / name).read_text(), port)
    targets = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        if any(link in targets for link in _fd_links(entry / "fd")):
            pids.append(int(entry.name))
    return sorted(pids)


def _fd_links(fds: Path) -> Iterator[str]:
    try:
        entries = list(fds.iterdir())
    except OSError:  # the process is gone, or not ours to look at
        return
    for fd in entries:
        # One fd may close between listing and reading (the listing's own one always does).
        with contextlib.suppress(OSError):
            yield os.readlink(fd)


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_percent: float | None  # since the previous sample, summed over the processes
    rss_mib: float | None
    alive: int


class ProcSampler:
    """CPU and RSS of a set of processes and their descendants (looked up at every
    sample: worker processes come and go), one :meth:`sample` per progress tick."""

    def __init__(self, pids: list[int], proc: Path = PROC, *, descendants: bool = True) -> None:
        self.pids = pids
        self._proc = proc
        self._descendants = descendants
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")
        self._last: tuple[float, int] | None = None

    def cpu_seconds(self) -> float:
        """CPU time the processes have used so far (those still alive)."""
        return self._read()[0] / self._ticks_per_s

    def rss_kib_by_pid(self) -> dict[int, int]:
        """Resident memory of each process alive now, in KiB; unlike :meth:`sample`, this
        leaves the CPU accounting between progress ticks alone."""
        pids = with_descendants(self.pids, self._proc) if self._descendants else self.pids
        found = {}
        for pid in pids:
            try:
                rss = parse_rss_kib((self._proc / str(pid) / "status").read_text())
            except (OSError, ValueError):
                continue
            if rss is not None:
                found[pid] = rss
        return found

    def sample(self) -> Usage:
        now = time.monotonic()
        ticks, rss_kib, alive = self._read()
        cpu = None
        if self._last is not None and now > self._last[0]:
            used_s = (ticks - self._last[1]) / self._ticks_per_s
            cpu = round(100 * used_s / (now - self._last[0]), 1)
        self._last = (now, ticks)
        rss = round(rss_kib / 1024, 1) if alive else None
        return Usage(cpu_percent=cpu, rss_mib=rss, alive=alive)

    def _read(self) -> tuple[int, int, int]:
        """(CPU ticks, RSS KiB, processes alive), summed."""
        ticks = 0
        rss_kib = 0
        alive = 0
        pids = with_descendants(self.pids, self._proc) if self._descendants else self.pids
        for pid in pids:
            try:
                ticks += parse_cpu_ticks((self._proc / str(pid) / "stat").read_text())
                rss_kib += parse_rss_kib((self._proc / str(pid) / "status").read_text()) or 0
            except (OSError, ValueError):
                continue
            alive += 1
        return ticks, rss_kib, alive


def machine_info(proc: Path = PROC) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": None,
        "ram_gib": None,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.partition(":")[2].strip()
                break
    with contextlib.suppress(OSError):
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return info
