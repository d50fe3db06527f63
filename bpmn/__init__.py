"""BPMN 2.0 XML: safe parsing, inspection and (later) the CRDT document model."""
