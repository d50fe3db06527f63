"""Timings of the BPMN document model: parse + load and render, for the largest corpus
file and a generated 10,000-element diagram.

    .venv/bin/python -m bench.bpmn_model [--corpus DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.diagrams import chain_diagram
from bpmn.document import load, read
from bpmn.parse import parse
from bpmn.render import render

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "miwg"


def _median_ms(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(name: str, xml: bytes, repeat: int) -> str:
    model = parse(xml)
    doc = load(model)
    parse_load = _median_ms(lambda: load(parse(xml)), repeat)
    render_doc = _median_ms(lambda: render(read(doc)), repeat)
    state = len(doc.get_update())
    return (
        f"| {name} | {len(xml) / 1024:.0f} KiB | {len(model.elements) + len(model.di)} "
        f"| {parse_load:.1f} | {render_doc:.1f} | {state / 1024:.0f} KiB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_corpus = Path(os.environ.get("BPMN_MIWG", DEFAULT_CORPUS))
    parser.add_argument("--corpus", type=Path, default=default_corpus)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    largest = max(args.corpus.rglob("*.bpmn"), key=lambda p: p.stat().st_size)
    print(f"{platform.node()} · Python {platform.python_version()} · {os.cpu_count()} cores")
    print("| diagram | XML | model entries | parse + load (ms) | read + render (ms) | CRDT state |")
    print("|---|---|---|---|---|---|")
    print(measure(f"{largest.parent.name}/{largest.name}", largest.read_bytes(), args.repeat))
    print(measure("generated, 10,000 elements", chain_diagram(5000), args.repeat))


if __name__ == "__main__":
    main()
