"""``bpmn-collab check FILE...``: parse BPMN files, report, and verify they round-trip.

For each file: parse it (errors are typed and say where), print its warnings, render the model
and compare the canonical forms (:mod:`bpmn.semantic`) of the file and of the rendering. The
comparison leaves out shapes and edges of elements that do not exist, which render drops (and
a warning reported). The exit status is 1 when any file could not be read or parsed, or did
not round-trip; warnings alone leave it 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bpmn.model import ModelWarning
from bpmn.parse import parse
from bpmn.render import render
from bpmn.repair import repair
from bpmn.semantic import canonical
from core.errors import CollabError

__all__ = ["check_files"]


def check_files(paths: Sequence[Path], out: TextIO) -> int:
    """Check every file in ``paths``, reporting to ``out``; 1 if any failed, else 0."""
    failed = 0
    for path in paths:
        if not _check(path, out):
            failed += 1
    if len(paths) > 1:
        out.write(f"{len(paths) - failed} of {len(paths)} files ok\n")
    return 1 if failed else 0


def _check(path: Path, out: TextIO) -> bool:
    try:
        xml = path.read_bytes()
    except OSError as exc:
        out.write(f"{path}: error: cannot read: {exc.strerror or exc}\n")
        return False
    try:
        model = parse(xml)
    except CollabError as exc:
        out.write(f"{path}: error {exc.code}: {exc.detail}\n")
        return False
    repaired = repair(model)
    for warning in repaired.warnings:
        out.write(_warning(path, warning))
    rendered = render(model)
    source, result = (canonical(x, drop_dangling_di=True) for x in (xml, rendered))
    if source != result:
        out.write(f"{path}: error: the rendered XML says something else than the file:\n")
        out.writelines(f"  {line}\n" for line in source.differences(result))
        return False
    out.write(
        f"{path}: ok: {len(model.elements)} elements, {len(model.di)} diagram elements, "
        f"{len(model.raw)} kept verbatim, {len(repaired.warnings)} warnings\n"
    )
    return True


def _warning(path: Path, warning: ModelWarning) -> str:
    where = f"{path}:{warning.line}" if warning.line is not None else str(path)
    return f"{where}: warning {warning.code}: {warning.message}\n"
