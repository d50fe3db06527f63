"""``bpmn-collab bench VERB``: one verb per scenario, plus the tools around the results.

Each verb is one row of :data:`VERBS`: its help, how it adds its options to its own
sub-parser, and the function that runs it. The modules are imported only when the verb
runs, so ``bpmn-collab serve`` never loads the load generator.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import import_module
from typing import Final

from bench.compare import add_arguments as add_compare_arguments
from bench.config import SCENARIOS, add_arguments
from bench.report import add_arguments as add_report_arguments
from bench.sweep import add_arguments as add_sweep_arguments


@dataclass(frozen=True, slots=True)
class Verb:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    module: str  # holds ``main(args: argparse.Namespace) -> int``


_SCENARIO_HELP: Final = {
    "rooms": "N editors over R rooms edit at a rate; one observer per room times fan-out",
    "broadcast": "one writer, N observers in one room",
    "join": "N clients join a room holding a large diagram at the same moment",
    "rest": "N REST users list, get and save with think times, beside a rooms load",
    "memory": "server memory per idle connection and per open 1,000-element document",
}

VERBS: Final[dict[str, Verb]] = {
    **{
        name: Verb(_SCENARIO_HELP[name], partial(add_arguments, scenario=name), "bench.main")
        for name in SCENARIOS
    },
    "sweep": Verb(
        "rooms at rising rates, a fresh server each; the highest rate with p99 in bounds",
        add_sweep_arguments,
        "bench.sweep",
    ),
    "compare": Verb(
        "every scenario against each server, fresh and pinned; compare.md of ours / peer",
        add_compare_arguments,
        "bench.compare",
    ),
    "report": Verb(
        "result files -> a markdown table and latency plots",
        add_report_arguments,
        "bench.report",
    ),
}


def add_commands(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="bench_verb", required=True, metavar="VERB")
    for name, verb in VERBS.items():
        verb.add_arguments(verbs.add_parser(name, help=verb.help, description=verb.help))


def run(args: argparse.Namespace) -> int:
    main: Callable[[argparse.Namespace], int] = import_module(VERBS[args.bench_verb].module).main
    return main(args)
