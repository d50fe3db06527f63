// What the binding keeps in step between bpmn-js's moddle tree and the CRDT document, as plain
// "views" of each entry (docs/crdt-schema.md):
//
//   element view: { type, parent, attrs, refs }   type: moddle type ("bpmn:Task"), parent: key,
//                                                 attrs: attribute -> canonical string,
//                                                 refs: reference child tag -> [ids] (flowNodeRef)
//   di view:      { type, parent, element, bounds, waypoints, label, attrs }
//
// walk() reads every view out of a moddle tree; elementView()/diView() read the same from the
// Y.Doc, normalised through moddle's own coercion so the two compare equal when they mean the
// same. Everything else an entry holds (text, body, ext, raw fragments) is never read or written
// by the studio: it stays as the server parsed it.

import * as Y from 'yjs'
import { KEYS } from './schema.js'
import { attributeName, attributeProperty, bareId, moddleType, splitName, tagLocalName } from './names.js'

const SIMPLE = new Set(['String', 'Boolean', 'Integer', 'Real', 'Element'])
// Open containers: their content is the exporting tool's, never entries (the schema's rule).
const OPEN = new Set(['extensionElements', 'documentation'])
// Derived from the flows: never stored.
const DERIVED = new Set(['incoming', 'outgoing'])

const hasOwn = (obj, name) => Object.prototype.hasOwnProperty.call(obj, name)

/** The properties of `obj` that contain child objects (not references, not attributes). */
export function containmentProperties (obj) {
  return obj.$descriptor.properties.filter((p) =>
    !p.isReference && !p.isAttr && !p.isVirtual && !SIMPLE.has(p.type) && !OPEN.has(p.name) &&
    !(p.name === 'diagrams' && obj.$type === 'bpmn:Definitions'))
}

/** The child objects of `obj`, property by property, in document order within each. */
export function childrenOf (obj) {
  const children = []
  for (const p of containmentProperties(obj)) {
    const value = obj[p.name]
    if (value == null) continue
    for (const child of p.isMany ? value : [value]) {
      if (child && typeof child === 'object' && child.$type) children.push(child)
    }
  }
  return children
}

function refIds (value) {
  return (Array.isArray(value) ? value : [value]).filter((o) => o && o.id).map((o) => o.id)
}

function canonical (p, value) {
  if (p.isReference) {
    const ids = refIds(value)
    return ids.length ? ids.join(' ') : undefined
  }
  return String(value)
}

/** Canonical form of an attribute value as the document holds it (moddle's coercion). */
export function canonicalText (p, text) {
  if (p.isReference) {
    const ids = String(text).split(/\s+/).filter(Boolean).map(bareId)
    return p.isMany ? ids.join(' ') : bareId(text)
  }
  switch (p.type) {
    case 'Boolean': return String(text === 'true')
    case 'Integer': return String(parseInt(text, 10))
    case 'Real': return String(parseFloat(text))
    default: return String(text)
  }
}

function attributeProperties (obj) {
  return obj.$descriptor.properties.filter((p) => p.isAttr && !p.isId && p.name !== 'bpmnElement')
}

function attrsOf (obj, ctx) {
  const attrs = {}
  for (const p of attributeProperties(obj)) {
    if (!hasOwn(obj, p.name)) continue
    const value = obj[p.name]
    if (value === undefined || value === null) continue
    const text = canonical(p, value)
    if (text !== undefined) attrs[attributeName(ctx.moddle, ctx.namespaces, p)] = text
  }
  for (const [name, value] of Object.entries(obj.$attrs ?? {})) {
    if (name === 'xmlns' || name.startsWith('xmlns:') || name === 'xsi:type') continue
    attrs[name] = String(value)
  }
  return attrs
}

function referenceChildProperties (obj) {
  const flowNode = obj.$instanceOf('bpmn:FlowNode')
  return obj.$descriptor.properties.filter((p) =>
    p.isReference && !p.isAttr && !p.isVirtual && !(flowNode && DERIVED.has(p.name)))
}

function refsOf (obj) {
  const refs = {}
  for (const p of referenceChildProperties(obj)) {
    if (!hasOwn(obj, p.name)) continue
    const ids = refIds(obj[p.name])
    if (ids.length) refs[p.ns.localName] = ids
  }
  return refs
}

function bounds (b) {
  return b ? [b.x, b.y, b.width, b.height] : undefined
}

export function elementViewOf (ctx, obj, parent) {
  return { type: obj.$type, parent, attrs: attrsOf(obj, ctx), refs: refsOf(obj) }
}

export function diViewOf (ctx, obj, parent) {
  const waypoints = obj.waypoint?.length ? obj.waypoint.map((p) => [p.x, p.y]) : undefined
  let label
  if (obj.label) label = obj.label.bounds ? bounds(obj.label.bounds) : []
  return {
    type: obj.$type,
    parent,
    element: obj.bpmnElement?.id,
    bounds: bounds(obj.bounds),
    waypoints,
    label,
    attrs: attrsOf(obj, ctx)
  }
}

/** The key of a moddle object: its id, or the synthetic key it was mapped to. */
export function keyOf (obj, anon) {
  return obj.id || anon.get(obj)
}

/**
 * Every entry the studio manages, read from the moddle tree rooted at `definitions`:
 * { elements: Map key -> {obj, view}, di: Map key -> {obj, view} }.
 * ctx: { moddle, namespaces (names.js Namespaces of the document) }.
 */
export function walk (ctx, definitions, anon) {
  const elements = new Map()
  const visit = (obj, parentKey) => {
    for (const child of childrenOf(obj)) {
      const key = keyOf(child, anon)
      if (!key || elements.has(key)) continue // an id-less object the document has no entry for
      elements.set(key, { obj: child, view: elementViewOf(ctx, child, parentKey) })
      visit(child, key)
    }
  }
  visit(definitions, '')
  const di = new Map()
  const add = (obj, parentKey) => {
    const key = keyOf(obj, anon)
    if (!key || di.has(key)) return null
    di.set(key, { obj, view: diViewOf(ctx, obj, parentKey) })
    return key
  }
  for (const diagram of definitions.diagrams ?? []) {
    const diagramKey = add(diagram, '')
    const plane = diagram.plane
    if (!diagramKey || !plane) continue
    const planeKey = add(plane, diagramKey)
    if (!planeKey) continue
    for (const shape of plane.planeElement ?? []) add(shape, planeKey)
  }
  return { elements, di }
}

// The document's side ------------------------------------------------------------------------

function plain (value) {
  return value instanceof Y.Map ? value.toJSON() : value
}

function descriptorOf (moddle, type) {
  return type ? moddle.getType(type).$descriptor : null
}

function normaliseAttrs (moddle, namespaces, desc, attrs, skip) {
  const out = {}
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (typeof value !== 'string' || skip.has(name)) continue
    const p = attributeProperty(moddle, namespaces, desc, name)
    if (p) {
      out[name] = canonicalText(p, value)
    } else {
      out[name] = value
    }
  }
  return out
}

const NO_SKIP = new Set(['id', 'xsi:type'])
const DI_SKIP = new Set(['id', 'bpmnElement'])

function xsiType (entry) {
  const attrs = entry.get(KEYS.ATTRS)
  const value = attrs instanceof Y.Map ? attrs.get('xsi:type') : undefined
  return typeof value === 'string' ? value : null
}

/**
 * The view of an `elements` entry (a Y.Map), or null when it is not one moddle can hold.
 * `parentType(key)` tells the moddle type of the entry's parent (for property-named tags).
 */
export function elementView (moddle, namespaces, entry, parentType = () => null) {
  if (!(entry instanceof Y.Map)) return null
  const parentKey = entry.get(KEYS.PARENT)
  const type = moddleType(moddle, namespaces, entry.get(KEYS.TYPE),
    parentKey === '' ? 'bpmn:Definitions' : parentType(parentKey), xsiType(entry))
  if (!type) return null
  const desc = descriptorOf(moddle, type)
  const refs = {}
  const text = plain(entry.get(KEYS.TEXT)) ?? {}
  const slots = Object.keys(text).filter((slot) => slot !== '.').sort((a, b) => slotIndex(a) - slotIndex(b))
  for (const slot of slots) {
    const local = splitName(slot.slice(0, slot.lastIndexOf('#')))[1]
    const p = desc.properties.find((q) => q.ns.localName === local)
    if (!p || !p.isReference || p.isAttr || p.isVirtual || DERIVED.has(p.name)) continue
    if (typeof text[slot] !== 'string' || !text[slot].trim()) continue
    ;(refs[local] ??= []).push(bareId(text[slot]))
  }
  return {
    type,
    parent: typeof parentKey === 'string' ? parentKey : '',
    attrs: normaliseAttrs(moddle, namespaces, desc, plain(entry.get(KEYS.ATTRS)), NO_SKIP),
    refs
  }
}

function slotIndex (slot) {
  return parseInt(slot.slice(slot.lastIndexOf('#') + 1), 10) || 0
}

function numbers (value, count) {
  return Array.isArray(value) && value.length === count &&
    value.every((n) => typeof n === 'number' && Number.isFinite(n))
}

/** The view of a `di` entry, or null when it is not one moddle can hold. */
export function diView (moddle, namespaces, entry) {
  if (!(entry instanceof Y.Map)) return null
  const type = moddleType(moddle, namespaces, entry.get(KEYS.TYPE))
  if (!type) return null
  const desc = descriptorOf(moddle, type)
  const element = entry.get(KEYS.ELEMENT)
  const b = entry.get(KEYS.BOUNDS)
  const w = entry.get(KEYS.WAYPOINTS)
  const l = entry.get(KEYS.LABEL)
  let label
  if (Array.isArray(l)) label = numbers(l, 4) ? [...l] : []
  const parent = entry.get(KEYS.PARENT)
  return {
    type,
    parent: typeof parent === 'string' ? parent : '',
    element: typeof element === 'string' ? bareId(element) : undefined,
    bounds: numbers(b, 4) ? [...b] : undefined,
    waypoints: Array.isArray(w) && w.length && w.every((p) => numbers(p, 2)) ? w.map((p) => [...p]) : undefined,
    label,
    attrs: normaliseAttrs(moddle, namespaces, desc, plain(entry.get(KEYS.ATTRS)), DI_SKIP)
  }
}

// Comparing views ----------------------------------------------------------------------------

export function sameValue (a, b) {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => sameValue(x, b[i]))
  }
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a)
    const kb = Object.keys(b)
    return ka.length === kb.length && ka.every((k) => sameValue(a[k], b[k]))
  }
  return false
}

/** The fields of two views that differ. */
export function changedFields (a, b) {
  const fields = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...fields].filter((f) => !sameValue(a[f], b[f]))
}

// Entries without an id ----------------------------------------------------------------------

const ANON_ELEMENT = /^~(.*)\/([^/#]+)#(\d+)(?:~\d+)?$/

/**
 * Map the document's synthetic keys (id-less entries) to the moddle objects they name, as the
 * schema makes them: `~<parent key>/<local name>#<n>` counts id-less same-named siblings from 0;
 * `~di/<bpmnElement>` for an id-less DI element, else `~di/<parent key>/<local name>#<n>`.
 * Returns a WeakMap object -> key.
 */
export function mapAnonymous (moddle, definitions, elements, di) {
  const anon = new WeakMap()
  const byId = new Map()
  const collect = (obj) => {
    for (const child of childrenOf(obj)) {
      if (child.id && !byId.has(child.id)) byId.set(child.id, child)
      collect(child)
    }
  }
  collect(definitions)
  const byKey = new Map()
  const resolve = (key, depth = 0) => {
    if (key === '') return definitions
    if (byKey.has(key)) return byKey.get(key)
    if (!key.startsWith('~') || depth > 64) return byId.get(key) ?? null
    byKey.set(key, null) // cycles resolve to nothing
    const match = ANON_ELEMENT.exec(key)
    let found = null
    const entry = elements.get(key)
    if (match && entry instanceof Y.Map && entry.get(KEYS.ANON)) {
      const [, parentKey, local, n] = match
      const parent = resolve(parentKey, depth + 1)
      if (parent) {
        const candidates = childrenOf(parent).filter((c) => !c.id && tagLocalName(moddle, c) === local)
        found = candidates[Number(n)] ?? null
      }
    }
    if (!found) found = byId.get(key) ?? null
    byKey.set(key, found)
    if (found && !found.id) anon.set(found, key)
    return found
  }
  for (const key of elements.keys()) if (key.startsWith('~')) resolve(key)

  // DI: diagrams, planes and plane elements without ids.
  const diagrams = definitions.diagrams ?? []
  const diObjects = []
  for (const diagram of diagrams) {
    diObjects.push(diagram)
    if (diagram.plane) {
      diObjects.push(diagram.plane)
      for (const shape of diagram.plane.planeElement ?? []) diObjects.push(shape)
    }
  }
  const diByKey = new Map()
  for (const obj of diObjects) if (obj.id) diByKey.set(obj.id, obj)
  const diChildren = (parentKey) => {
    if (parentKey === '') return diagrams
    const parent = diByKey.get(parentKey)
    if (!parent) return []
    if (parent.$type === 'bpmndi:BPMNDiagram') return parent.plane ? [parent.plane] : []
    return parent.planeElement ?? []
  }
  const entries = [...di.entries()]
    .filter(([key, entry]) => key.startsWith('~') && entry instanceof Y.Map && entry.get(KEYS.ANON))
    .sort(([a], [b]) => a.split('/').length - b.split('/').length)
  for (let round = 0; round < 3; round++) {
    for (const [key, entry] of entries) {
      if (diByKey.has(key)) continue
      const parentKey = entry.get(KEYS.PARENT) ?? ''
      const element = entry.get(KEYS.ELEMENT)
      let found = null
      if (typeof element === 'string' && key === `~di/${element}`) {
        const id = bareId(element)
        found = diObjects.find((o) => !o.id && o.bpmnElement?.id === id && !anon.has(o)) ?? null
      } else {
        const match = ANON_ELEMENT.exec(key.replace(/^~di\//, '~'))
        if (match) {
          const [, , local, n] = match
          const candidates = diChildren(parentKey).filter((c) => !c.id && tagLocalName(moddle, c) === local)
          found = candidates[Number(n)] ?? null
        }
      }
      if (found && !anon.has(found)) {
        anon.set(found, key)
        diByKey.set(key, found)
      }
    }
  }
  return anon
}
