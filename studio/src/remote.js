// The CRDT document -> the moddle tree: bring the objects behind the changed keys to what the
// document says, and report what changed so the canvas can follow (view.js). Pure moddle work:
// no DOM, testable in Node.

import { KEYS } from './schema.js'
import { Namespaces } from './names.js'
import { changedFields, childrenOf, diView, elementView } from './model.js'

const SIMPLE = new Set(['String', 'Boolean', 'Integer', 'Real', 'Element'])

function containerProperty (parent, child) {
  return parent.$descriptor.properties.find((p) =>
    !p.isReference && !p.isAttr && !p.isVirtual && !SIMPLE.has(p.type) &&
    p.name !== 'extensionElements' && p.name !== 'documentation' && child.$instanceOf(p.type))
}

export function detach (obj) {
  const parent = obj.$parent
  if (!parent) return
  for (const p of parent.$descriptor.properties) {
    if (p.isReference || p.isAttr || SIMPLE.has(p.type)) continue
    const value = parent[p.name]
    if (p.isMany && Array.isArray(value)) {
      const at = value.indexOf(obj)
      if (at >= 0) value.splice(at, 1)
    } else if (value === obj) {
      parent.set(p.name, undefined)
    }
  }
  obj.$parent = undefined
}

export function attach (parent, obj) {
  const p = containerProperty(parent, obj)
  if (!p) return false
  if (p.isMany) {
    const list = parent.get(p.name)
    if (!list.includes(obj)) list.push(obj)
  } else {
    parent.set(p.name, obj)
  }
  obj.$parent = parent
  return true
}

function collection (obj, name) {
  const list = obj.get(name)
  return Array.isArray(list) ? list : null
}

function remove (list, item) {
  const at = list ? list.indexOf(item) : -1
  if (at >= 0) list.splice(at, 1)
}

function unset (obj, name) {
  if (Object.prototype.hasOwnProperty.call(obj, name)) delete obj[name]
}

/** Keep a sequence flow's ends' derived incoming/outgoing in step. */
function wireFlow (flow, side, before, after) {
  if (!flow.$instanceOf('bpmn:SequenceFlow')) return
  const list = side === 'sourceRef' ? 'outgoing' : 'incoming'
  if (before && before !== after) remove(collection(before, list), flow)
  if (after) {
    const target = collection(after, list)
    if (target && !target.includes(flow)) target.push(flow)
  }
}

function setAttrs (moddle, obj, before, after, lookup) {
  const desc = obj.$descriptor
  for (const [name, text] of Object.entries(after)) {
    if (before[name] === text) continue
    const p = name.includes(':') ? null : desc.propertiesByName[name]
    if (p && p.isAttr && !p.isId) {
      let value
      if (p.isReference) {
        const refs = text.split(' ').filter(Boolean).map(lookup).filter(Boolean)
        value = p.isMany ? refs : refs[0]
        if (p.name === 'sourceRef' || p.name === 'targetRef') wireFlow(obj, p.name, obj[p.name], value)
      } else {
        value = p.type === 'Boolean' ? text === 'true'
          : p.type === 'Integer' ? parseInt(text, 10)
            : p.type === 'Real' ? parseFloat(text) : text
      }
      if (value === undefined) unset(obj, p.name)
      else obj.set(p.name, value)
    } else {
      obj.$attrs[name] = text
    }
  }
  for (const name of Object.keys(before)) {
    if (name in after) continue
    const p = name.includes(':') ? null : desc.propertiesByName[name]
    if (p && p.isAttr) {
      if (p.name === 'sourceRef' || p.name === 'targetRef') wireFlow(obj, p.name, obj[p.name], undefined)
      unset(obj, p.name)
    } else {
      delete obj.$attrs[name]
    }
  }
}

function setRefs (obj, before, after, lookup) {
  const locals = new Set([...Object.keys(before), ...Object.keys(after)])
  for (const local of locals) {
    const p = obj.$descriptor.properties.find((q) => q.ns.localName === local)
    if (!p) continue
    const refs = (after[local] ?? []).map(lookup).filter(Boolean)
    if (p.isMany) {
      const list = obj.get(p.name)
      const old = [...list]
      list.splice(0, list.length, ...refs)
      if (p.name === 'flowNodeRef') {
        // bpmn-js keeps the virtual flowNode.lanes in step with lane.flowNodeRef.
        for (const node of old) if (!refs.includes(node)) remove(collection(node, 'lanes'), obj)
        for (const node of refs) {
          const lanes = collection(node, 'lanes')
          if (lanes && !lanes.includes(obj)) lanes.push(obj)
        }
      }
    } else if (refs.length) {
      obj.set(p.name, refs[0])
    } else {
      unset(obj, p.name)
    }
  }
}

function setBounds (moddle, obj, name, value) {
  if (!value) {
    unset(obj, name)
    return
  }
  const [x, y, width, height] = value
  if (obj[name]) Object.assign(obj[name], { x, y, width, height })
  else obj.set(name, moddle.create('dc:Bounds', { x, y, width, height }))
}

/** Point every reference to `old` (in the objects of `index`) at `replacement`. */
function repoint (index, old, replacement) {
  const all = [...index.elements.values(), ...index.di.values()].map(({ obj }) => obj)
  for (const obj of all) {
    for (const p of obj.$descriptor.properties) {
      if (!p.isReference) continue
      const value = obj[p.name]
      if (value === old) obj[p.name] = replacement
      else if (Array.isArray(value)) {
        const at = value.indexOf(old)
        if (at >= 0) value[at] = replacement
      }
    }
  }
}

/**
 * Apply the document's entries under the changed keys to the moddle tree.
 *
 * ctx: { moddle, definitions, anon (WeakMap obj -> synthetic key), index (the last walk) }.
 * changed: { elements: Iterable<key>, di: Iterable<key> }. Returns a report of
 * { created, removed, updated } lists of { root, key, obj, fields } for the canvas.
 */
export function applyToModel (ctx, doc, changed) {
  const { moddle, definitions, anon, index } = ctx
  const namespaces = new Namespaces(doc.getMap(KEYS.META).get(KEYS.NAMESPACES))
  const yElements = doc.getMap(KEYS.ELEMENTS)
  const yDi = doc.getMap(KEYS.DI)
  const report = { created: [], removed: [], updated: [], replaced: [] }

  const created = new Map()
  const lookup = (key) => created.get(key) ?? index.elements.get(key)?.obj
  const make = (root, key, type) => {
    const obj = moddle.create(type)
    if (key.startsWith('~')) anon.set(obj, key)
    else obj.id = key
    return obj
  }

  // Elements: what is new is made first, so references between new objects resolve.
  const work = []
  for (const key of changed.elements) {
    const view = elementView(moddle, namespaces, yElements.get(key))
    const current = index.elements.get(key)
    if (!view) {
      if (current) report.removed.push({ root: 'elements', key, obj: current.obj })
      continue
    }
    if (current && current.view.type === view.type) {
      const fields = changedFields(current.view, view)
      if (fields.length) work.push({ key, obj: current.obj, before: current.view, view, fields })
      continue
    }
    const obj = make('elements', key, view.type)
    created.set(key, obj)
    const before = { type: view.type, parent: null, attrs: {}, refs: {} }
    work.push({ key, obj, before, view, fields: ['attrs', 'refs', 'parent'], old: current?.obj })
  }
  for (const { key, obj, before, view, fields, old } of work) {
    if (fields.includes('attrs')) setAttrs(moddle, obj, before.attrs, view.attrs, lookup)
    if (fields.includes('refs')) setRefs(obj, before.refs, view.refs, lookup)
    if (fields.includes('parent') || old) {
      const parent = view.parent === '' ? definitions : lookup(view.parent)
      if (old) {
        // Replaced (another type under the same key): the new object takes the old one's place,
        // children and the references to it.
        for (const child of childrenOf(old)) {
          detach(child)
          if (!attach(obj, child)) attach(old, child)
        }
        repoint(index, old, obj)
        detach(old)
        report.replaced.push({ root: 'elements', key, obj, old })
      }
      if (parent && parent !== obj.$parent) {
        detach(obj)
        attach(parent, obj)
      }
    }
    if (old) continue
    if (created.has(key)) report.created.push({ root: 'elements', key, obj, fields })
    else report.updated.push({ root: 'elements', key, obj, fields })
  }
  for (const { obj } of report.removed) {
    if (obj.$instanceOf('bpmn:SequenceFlow')) {
      wireFlow(obj, 'sourceRef', obj.sourceRef, undefined)
      wireFlow(obj, 'targetRef', obj.targetRef, undefined)
    }
    for (const lane of collection(obj, 'lanes') ?? []) remove(collection(lane, 'flowNodeRef'), obj)
    detach(obj)
  }

  // DI.
  const diCreated = new Map()
  const diLookup = (key) => diCreated.get(key) ?? index.di.get(key)?.obj
  const diWork = []
  for (const key of changed.di) {
    const view = diView(moddle, namespaces, yDi.get(key))
    const current = index.di.get(key)
    if (!view) {
      if (current) report.removed.push({ root: 'di', key, obj: current.obj })
      continue
    }
    if (current && current.view.type === view.type) {
      const fields = changedFields(current.view, view)
      if (fields.length) diWork.push({ key, obj: current.obj, before: current.view, view, fields })
      continue
    }
    if (current) report.removed.push({ root: 'di', key, obj: current.obj })
    const obj = make('di', key, view.type)
    diCreated.set(key, obj)
    const before = { attrs: {} }
    diWork.push({ key, obj, before, view, fields: ['element', 'bounds', 'waypoints', 'label', 'attrs', 'parent'] })
  }
  for (const { obj } of report.removed.filter((r) => r.root === 'di')) detach(obj)
  for (const { key, obj, before, view, fields } of diWork) {
    if (fields.includes('element')) {
      const element = view.element === undefined ? undefined : lookup(view.element)
      if (element) obj.set('bpmnElement', element)
      else unset(obj, 'bpmnElement')
    }
    if (fields.includes('bounds')) setBounds(moddle, obj, 'bounds', view.bounds)
    if (fields.includes('waypoints')) {
      if (view.waypoints) obj.set('waypoint', view.waypoints.map(([x, y]) => moddle.create('dc:Point', { x, y })))
      else unset(obj, 'waypoint')
    }
    if (fields.includes('label')) {
      if (view.label === undefined) unset(obj, 'label')
      else {
        if (!obj.label) obj.set('label', moddle.create('bpmndi:BPMNLabel'))
        if (view.label.length === 4) setBounds(moddle, obj.label, 'bounds', view.label)
        else unset(obj.label, 'bounds')
      }
    }
    if (fields.includes('attrs')) setAttrs(moddle, obj, before.attrs, view.attrs, lookup)
    if (fields.includes('parent')) {
      const parent = view.parent === '' ? definitions : diLookup(view.parent)
      if (parent && parent !== obj.$parent) {
        detach(obj)
        attach(parent, obj)
      }
    }
    if (diCreated.has(key)) report.created.push({ root: 'di', key, obj, fields })
    else report.updated.push({ root: 'di', key, obj, fields })
  }
  return report
}
