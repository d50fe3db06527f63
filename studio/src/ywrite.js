// Local edits -> the CRDT document: the difference between two walks of the moddle tree (before
// and after one bpmn-js command) written as the smallest set of key changes, per the schema.

import * as Y from 'yjs'
import { KEYS, NS } from './schema.js'
import { keyBetween, isKey } from './order.js'
import { Namespaces, qualifiedTag, splitName } from './names.js'
import { changedFields, sameValue } from './model.js'

/** The entries that differ between two walks, per root: { added, removed, changed }. */
export function diffWalks (before, after) {
  const diff = {}
  for (const root of ['elements', 'di']) {
    const a = before[root]
    const b = after[root]
    const added = []
    const changed = []
    const removed = []
    for (const [key, { view, obj }] of b) {
      const old = a.get(key)
      if (!old) added.push([key, view, obj])
      else {
        const fields = changedFields(old.view, view)
        if (fields.length) changed.push([key, old.view, view, fields, obj])
      }
    }
    for (const key of a.keys()) if (!b.has(key)) removed.push(key)
    diff[root] = { added, changed, removed }
  }
  return diff
}

export function isEmptyDiff (diff) {
  return ['elements', 'di'].every((root) =>
    !diff[root].added.length && !diff[root].changed.length && !diff[root].removed.length)
}

/** Order key after every sibling under `parent` (in `map`, and raw entries of that slot). */
function orderAfterLast (map, raw, parent, slot) {
  let last = null
  const consider = (entry) => {
    const order = entry.get(KEYS.ORDER)
    if (isKey(order) && (last === null || order > last)) last = order
  }
  for (const entry of map.values()) {
    if (entry instanceof Y.Map && entry.get(KEYS.PARENT) === parent) consider(entry)
  }
  for (const entry of raw.values()) {
    if (entry instanceof Y.Map && entry.get(KEYS.PARENT) === parent &&
        (parent === '' || entry.get(KEYS.SLOT) === slot)) consider(entry)
  }
  return keyBetween(last, null)
}

function refSlots (namespaces, local, ids) {
  const prefix = namespaces.prefixFor(NS.BPMN)
  const tag = prefix ? `${prefix}:${local}` : local
  return ids.map((id, n) => [`${tag}#${n}`, id])
}

function writeAttrs (entry, before, after) {
  let attrs = entry.get(KEYS.ATTRS)
  if (!(attrs instanceof Y.Map)) {
    attrs = new Y.Map()
    entry.set(KEYS.ATTRS, attrs)
  }
  for (const [name, value] of Object.entries(after)) {
    if (before[name] !== value) attrs.set(name, value)
  }
  for (const name of Object.keys(before)) {
    if (!(name in after)) attrs.delete(name)
  }
}

function writeRefs (entry, namespaces, before, after) {
  let text = entry.get(KEYS.TEXT)
  if (!(text instanceof Y.Map)) {
    text = new Y.Map()
    entry.set(KEYS.TEXT, text)
  }
  const locals = new Set([...Object.keys(before), ...Object.keys(after)])
  for (const local of locals) {
    if (sameValue(before[local], after[local])) continue
    for (const slot of [...text.keys()]) {
      if (slot === '.') continue
      const tag = slot.slice(0, slot.lastIndexOf('#'))
      if (splitName(tag)[1] === local) text.delete(slot)
    }
    for (const [slot, id] of refSlots(namespaces, local, after[local] ?? [])) text.set(slot, id)
  }
}

function setGeometry (entry, name, value) {
  if (value === undefined) entry.delete(name)
  else entry.set(name, value)
}

/** Remove `key` and the raw XML kept under it. */
function removeEntry (map, raw, key, slot) {
  map.delete(key)
  for (const [rawKey, entry] of [...raw.entries()]) {
    if (entry instanceof Y.Map && entry.get(KEYS.PARENT) === key && entry.get(KEYS.SLOT) === slot) {
      raw.delete(rawKey)
    }
  }
}

/**
 * Write `diff` (from diffWalks) into the document's root maps. Call inside one transaction.
 * `moddle` names the types; `namespaces` are the document's bindings (meta.namespaces).
 */
export function writeDiff (doc, moddle, diff) {
  const meta = doc.getMap(KEYS.META)
  const elements = doc.getMap(KEYS.ELEMENTS)
  const di = doc.getMap(KEYS.DI)
  const raw = doc.getMap(KEYS.RAW)
  const namespaces = new Namespaces(meta.get(KEYS.NAMESPACES))
  const tag = (obj) => qualifiedTag(moddle, namespaces, obj)

  // Removals first: a key removed and another added in its place stay apart.
  for (const key of diff.elements.removed) removeEntry(elements, raw, key, 'elements')
  for (const key of diff.di.removed) removeEntry(di, raw, key, 'di')

  // Parents before children, so each new entry's order follows its siblings already there.
  for (const [key, view, obj] of diff.elements.added) {
    const entry = new Y.Map()
    elements.set(key, entry)
    entry.set(KEYS.TYPE, tag(obj))
    entry.set(KEYS.PARENT, view.parent)
    entry.set(KEYS.ORDER, orderAfterLast(elements, raw, view.parent, 'elements'))
    entry.set(KEYS.ATTRS, new Y.Map(Object.entries(view.attrs)))
    entry.set(KEYS.TEXT, new Y.Map(Object.keys(view.refs).flatMap((local) => refSlots(namespaces, local, view.refs[local]))))
    entry.set(KEYS.BODY, new Y.Map())
  }
  for (const [key, before, after, fields, obj] of diff.elements.changed) {
    const entry = elements.get(key)
    if (!(entry instanceof Y.Map)) continue // removed by someone else meanwhile
    if (fields.includes('type')) entry.set(KEYS.TYPE, tag(obj))
    if (fields.includes('parent')) {
      entry.set(KEYS.PARENT, after.parent)
      entry.set(KEYS.ORDER, orderAfterLast(elements, raw, after.parent, 'elements'))
    }
    if (fields.includes('attrs')) writeAttrs(entry, before.attrs, after.attrs)
    if (fields.includes('refs')) writeRefs(entry, namespaces, before.refs, after.refs)
  }

  for (const [key, view, obj] of diff.di.added) {
    const entry = new Y.Map()
    di.set(key, entry)
    entry.set(KEYS.TYPE, tag(obj))
    entry.set(KEYS.PARENT, view.parent)
    entry.set(KEYS.ORDER, orderAfterLast(di, raw, view.parent, 'di'))
    if (view.element !== undefined) entry.set(KEYS.ELEMENT, view.element)
    entry.set(KEYS.ATTRS, new Y.Map(Object.entries(view.attrs)))
    if (view.bounds) entry.set(KEYS.BOUNDS, view.bounds)
    if (view.waypoints) entry.set(KEYS.WAYPOINTS, view.waypoints)
    if (view.label) entry.set(KEYS.LABEL, view.label)
  }
  for (const [key, before, after, fields, obj] of diff.di.changed) {
    const entry = di.get(key)
    if (!(entry instanceof Y.Map)) continue
    if (fields.includes('type')) entry.set(KEYS.TYPE, tag(obj))
    if (fields.includes('parent')) {
      entry.set(KEYS.PARENT, after.parent)
      entry.set(KEYS.ORDER, orderAfterLast(di, raw, after.parent, 'di'))
    }
    if (fields.includes('element')) setGeometry(entry, KEYS.ELEMENT, after.element)
    if (fields.includes('bounds')) setGeometry(entry, KEYS.BOUNDS, after.bounds)
    if (fields.includes('waypoints')) setGeometry(entry, KEYS.WAYPOINTS, after.waypoints)
    if (fields.includes('label')) setGeometry(entry, KEYS.LABEL, after.label)
    if (fields.includes('attrs')) writeAttrs(entry, before.attrs, after.attrs)
  }
}
