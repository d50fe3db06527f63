"""Where the shared BPMN corpus is, and BPMN documents made up for tests."""

from __future__ import annotations

import os
from pathlib import Path

from bench.diagrams import chain_diagram, diagram_of_size

__all__ = ["CORPUS", "MIWG", "REFERENCE", "chain_diagram", "diagram_of_size", "reference_files"]

CORPUS = Path(
    os.environ.get("BPMN_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
MIWG = CORPUS / "miwg"
REFERENCE = MIWG / "reference"


def reference_files() -> list[Path]:
    return sorted(REFERENCE.glob("*.bpmn"))
