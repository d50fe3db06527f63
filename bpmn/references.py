"""References that name nothing: kept as written, reported as warnings.

Real files dangle (exporters leave shapes of deleted elements, Camunda's ``calledElement`` names
a process in another file), so :func:`dangling_references` never refuses a document; it says
where. :func:`di_target` is the rule render's repair pass shares for DI that points at nothing.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from typing import Final

from bpmn.model import BpmnModel, ModelWarning
from bpmn.qnames import local_name

__all__ = ["DANGLING_REFERENCE", "dangling_references", "di_target"]

DANGLING_REFERENCE: Final = "xml-dangling-reference"

# Attributes (unprefixed) whose value names a semantic element, by id or QName.
_ATTRIBUTES: Final = frozenset(
    {
        "activityRef",
        "attachedToRef",
        "calledChoreographyRef",
        "calledCollaborationRef",
        "calledElement",
        "dataObjectRef",
        "dataStoreRef",
        "default",
        "definitionalCollaborationRef",
        "errorRef",
        "escalationRef",
        "itemSubjectRef",
        "messageRef",
        "operationRef",
        "partitionElementRef",
        "processRef",
        "signalRef",
        "sourceRef",
        "targetRef",
    }
)
# Text children whose content names a semantic element (``<bpmn:flowNodeRef>Task_1<...>``).
_TEXT_CHILDREN: Final = frozenset(
    {
        "categoryValueRef",
        "choreographyRef",
        "correlationPropertyRef",
        "dataInputRefs",
        "dataOutputRefs",
        "endPointRef",
        "errorRef",
        "eventDefinitionRef",
        "flowNodeRef",
        "inMessageRef",
        "innerParticipantRef",
        "inputSetRefs",
        "interfaceRef",
        "loopDataInputRef",
        "loopDataOutputRef",
        "messageFlowRef",
        "optionalInputRefs",
        "optionalOutputRefs",
        "outMessageRef",
        "outerParticipantRef",
        "outputSetRefs",
        "participantRef",
        "resourceRef",
        "sourceRef",
        "supportedInterfaceRef",
        "targetRef",
        "whileExecutingInputRefs",
        "whileExecutingOutputRefs",
    }
)
# DI attributes that name another diagram element (many tools write the semantic id instead).
_DI_ATTRIBUTES: Final = ("sourceElement", "targetElement")


def di_target(reference: str, keys: Container[str]) -> str | None:
    """The key ``reference`` (an id or a QName such as ``ns:Task_1``) names, if any."""
    if reference in keys:
        return reference
    local = local_name(reference)
    return local if local in keys else None


def dangling_references(
    model: BpmnModel, lines: Mapping[str, int | None] | None = None
) -> list[ModelWarning]:
    """One warning per reference in ``model`` that names no element (``lines``: key -> line)."""
    where = lines or {}
    return [
        ModelWarning(DANGLING_REFERENCE, message, where.get(key), key)
        for key, message in _dangling(model)
    ]


def _dangling(model: BpmnModel) -> Iterator[tuple[str, str]]:
    elements, di = model.elements, model.di
    for key, element in elements.items():
        for name, value in element.attrs.items():
            if name in _ATTRIBUTES and value and di_target(value, elements) is None:
                yield key, f"{element.type} {key!r}: {name} {value!r} names no element"
        for slot, value in element.text.items():
            name = local_name(slot.rpartition("#")[0])
            if name not in _TEXT_CHILDREN:
                continue
            for reference in value.split():
                if di_target(reference, elements) is None:
                    yield key, f"{element.type} {key!r}: {name} {reference!r} names no element"
    for key, entry in di.items():
        if entry.element and di_target(entry.element, elements) is None:
            yield key, f"{entry.type} {key!r}: bpmnElement {entry.element!r} names no element"
        for name in _DI_ATTRIBUTES:
            target = entry.attrs.get(name)
            if target and di_target(target, di) is None and di_target(target, elements) is None:
                yield key, f"{entry.type} {key!r}: {name} {target!r} names no diagram element"
        style = entry.label_attrs.get("labelStyle")
        if style and di_target(style, di) is None:
            yield key, f"{entry.type} {key!r}: labelStyle {style!r} names no label style"
