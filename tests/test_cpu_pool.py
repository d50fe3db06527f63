"""The CPU pool: background work in a niced worker process that never outlives its server,
and the pure jobs it runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pycrdt import Map

from bench.diagrams import chain_diagram
from bpmn.document import load, read
from bpmn.parse import parse
from bpmn.render import render
from bpmn.summary import summary
from server.cpu_pool import CpuPoolBroken, ProcessCpuPool, ThreadCpuPool
from server.render_jobs import content_digest, render_state, state_digest

ROOT = Path(__file__).resolve().parents[1]


async def test_jobs_run_in_a_niced_worker_process() -> None:
    async with ProcessCpuPool(nice=7) as pool:
        worker = await pool.run(os.getpid)
        assert worker != os.getpid()
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert await pool.run(os.getpriority, os.PRIO_PROCESS, 0) == min(ours + 7, 19)
        assert await pool.run(os.getpid) == worker  # one worker, kept


async def test_a_killed_worker_fails_its_job_and_the_next_job_gets_a_new_one() -> None:
    async with ProcessCpuPool() as pool:
        worker = await pool.run(os.getpid)
        sleeping = asyncio.ensure_future(pool.run(time.sleep, 30))
        await asyncio.sleep(0.3)  # the job is in the worker now
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(CpuPoolBroken):
            await asyncio.wait_for(sleeping, 20)
        assert await pool.run(os.getpid) not in (worker, os.getpid())
        assert pool.restarts == 1


async def test_a_closed_pool_refuses_work() -> None:
    pool = ProcessCpuPool()
    async with pool:
        pass
    with pytest.raises(CpuPoolBroken):
        await pool.run(os.getpid)


def test_the_worker_exits_when_its_server_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "pool_owner.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, sys
            from server.cpu_pool import ProcessCpuPool

            async def main():
                async with ProcessCpuPool() as pool:
                    print(await pool.run(os.getpid), flush=True)
                    await asyncio.sleep(600)

            if __name__ == "__main__":
                asyncio.run(main())
            """
        )
    )
    with subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            worker = int(server.stdout.readline())
            assert _alive(worker)
        finally:
            server.kill()
        server.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker outlived its server"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_thread_pool_runs_the_same_jobs_in_process() -> None:
    assert await ThreadCpuPool().run(os.getpid) == os.getpid()


# --- the jobs ---------------------------------------------------------------------------------


def test_render_state_is_read_render_and_summary_of_the_state() -> None:
    doc = load(parse(chain_diagram(20)))
    rendered = render_state(doc.get_update())
    model = read(doc)
    assert rendered.xml == render(model)
    assert rendered.element_count == summary(model).element_count
    assert rendered.digest == content_digest(model)


def test_equal_content_digests_equally_whatever_the_key_order() -> None:
    model = parse(chain_diagram(5))
    task = model.elements["Task_1"]
    task.attrs = {"name": "A", "id": "Task_1"}
    first = content_digest(model)
    task.attrs = {"id": "Task_1", "name": "A"}
    assert content_digest(model) == first
    task.attrs["name"] = "B"
    assert content_digest(model) != first


def test_a_state_digest_changes_with_any_edit() -> None:
    doc = load(parse(chain_diagram(5)))
    before = state_digest(doc.get_update())
    assert state_digest(doc.get_update()) == before
    doc.get("elements", type=Map)["Task_2"]["attrs"]["name"] = "Renamed"
    assert state_digest(doc.get_update()) != before
