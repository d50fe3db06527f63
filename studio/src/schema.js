// The CRDT document's key names (docs/crdt-schema.md). The server's table is KEYS in
// bpmn/document.py; this mirrors it, and tests/test_studio_unit.py checks that they agree.

export const KEYS = Object.freeze({
  META: 'meta',
  ELEMENTS: 'elements',
  DI: 'di',
  RAW: 'raw',
  SCHEMA: 'schema',
  TAG: 'tag',
  DEFINITIONS: 'definitions',
  NAMESPACES: 'namespaces',
  TYPE: 'type',
  PARENT: 'parent',
  ORDER: 'order',
  ATTRS: 'attrs',
  TEXT: 'text',
  BODY: 'body',
  EXT: 'ext',
  ANON: 'anon',
  ELEMENT: 'element',
  BOUNDS: 'bounds',
  WAYPOINTS: 'waypoints',
  LABEL: 'label',
  LABEL_ATTRS: 'labelAttrs',
  FONT: 'font',
  SLOT: 'slot',
  XML: 'xml'
})

export const SCHEMA_VERSION = 1

export const NS = Object.freeze({
  BPMN: 'http://www.omg.org/spec/BPMN/20100524/MODEL',
  BPMNDI: 'http://www.omg.org/spec/BPMN/20100524/DI',
  DC: 'http://www.omg.org/spec/DD/20100524/DC',
  DI: 'http://www.omg.org/spec/DD/20100524/DI'
})

// The prefix the schema's render falls back to for a namespace the document binds nowhere.
export const WELL_KNOWN_PREFIX = Object.freeze({
  [NS.BPMN]: 'bpmn',
  [NS.BPMNDI]: 'bpmndi',
  [NS.DC]: 'dc',
  [NS.DI]: 'di'
})

/** The root maps of a Y.Doc laid out as the schema says. */
export function roots (doc) {
  return {
    meta: doc.getMap(KEYS.META),
    elements: doc.getMap(KEYS.ELEMENTS),
    di: doc.getMap(KEYS.DI),
    raw: doc.getMap(KEYS.RAW)
  }
}
