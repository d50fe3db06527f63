// The moddle tree -> bpmn-js's canvas: after remote.js brought the moddle objects to what the
// document says, make the diagram-js elements follow, in place. No command runs (so nothing
// lands on an undo stack and no modeling behaviour re-derives what the other editor already
// derived); selection and viewport stay as the user has them. New elements are drawn by
// bpmn-js's own importer service, the way importXML draws them.

import { is } from 'bpmn-js/lib/util/ModelUtil'
import { getLabel, isLabelExternal } from 'bpmn-js/lib/util/LabelUtil'
import { add as collectionAdd, remove as collectionRemove } from 'diagram-js/lib/util/Collections'

const isLabel = (element) => element.type === 'label'
const isConnection = (element) => Array.isArray(element.waypoints)

// Elements whose canvas parent follows from their semantic parent (see visualParent).
const REPARENTED = ['bpmn:FlowNode', 'bpmn:Participant', 'bpmn:Lane', 'bpmn:SequenceFlow',
  'bpmn:DataObjectReference', 'bpmn:TextAnnotation', 'bpmn:Group']

export class CanvasSync {
  constructor (modeler) {
    this.canvas = modeler.get('canvas')
    this.registry = modeler.get('elementRegistry')
    this.importer = modeler.get('bpmnImporter')
    this.factory = modeler.get('elementFactory')
    this.eventBus = modeler.get('eventBus')
    this.waiting = new Set() // DI objects that cannot be drawn yet (an end or a parent is missing)
  }

  /** The canvas elements (labels excluded) drawn for a moddle object, semantic or DI. */
  drawn (obj) {
    return this.registry.filter((e) => !isLabel(e) && (e.businessObject === obj || e.di === obj))
  }

  apply (report, definitions) {
    const changed = new Set()
    const touch = (element) => { if (element) changed.add(element) }
    let structural = false

    // 1. What is gone: connections first, then shapes (a container's children before it).
    const gone = []
    for (const { obj, old } of [...report.removed, ...report.replaced]) gone.push(...this.drawn(old ?? obj))
    gone.sort((a, b) => (isConnection(b) - isConnection(a)) || (depth(b) - depth(a)))
    for (const element of gone) {
      this.remove(element, touch)
      structural = true
    }

    // 2. A plane now showing another element (a process became a collaboration).
    for (const { root, obj, fields } of report.updated) {
      if (root === 'di' && is(obj, 'bpmndi:BPMNPlane') && fields.includes('element')) {
        const current = this.canvas.getRootElements().find((r) => r.di === obj)
        if (current && obj.bpmnElement && current.businessObject !== obj.bpmnElement) {
          this.switchRoot(current, obj, touch)
          structural = true
        }
      }
    }

    // 3. What is new: DI created, or whose element changed, or whose element just arrived.
    const fresh = new Set(this.waiting)
    const created = new Set(report.created.map((c) => c.obj))
    for (const { root, obj, fields } of [...report.created, ...report.updated]) {
      if (root !== 'di') continue
      if (is(obj, 'bpmndi:BPMNPlane') && !created.has(obj)) continue // a root: step 2
      if (fields.includes('element') || created.has(obj)) {
        for (const element of this.drawn(obj)) this.remove(element, touch)
        fresh.add(obj)
      }
    }
    for (const { root, obj } of [...report.created, ...report.replaced]) {
      if (root === 'elements') for (const di of diOf(definitions, obj)) fresh.add(di)
    }
    if (fresh.size) {
      structural = true
      this.waiting.clear()
      for (const di of drawingOrder([...fresh])) {
        if (!di.bpmnElement || !this.shown(di)) continue
        if (this.drawn(di).length) continue
        try {
          const parent = is(di, 'bpmndi:BPMNPlane') ? undefined : this.visualParent(di.bpmnElement)
          if (!is(di, 'bpmndi:BPMNPlane') && !parent) {
            this.waiting.add(di)
            continue
          }
          touch(this.importer.add(di.bpmnElement, di, parent))
        } catch (error) {
          this.waiting.add(di) // e.g. a flow whose end is not drawn yet
        }
      }
    }

    // 4. Geometry and properties of what stays.
    for (const { root, obj, fields } of report.updated) {
      for (const element of this.drawn(obj)) {
        if (root === 'di') {
          if (fields.includes('bounds') && obj.bounds && !isConnection(element)) {
            Object.assign(element, rounded(obj.bounds))
            touch(element)
          }
          if (fields.includes('waypoints') && obj.waypoint && isConnection(element)) {
            element.waypoints = obj.waypoint.map((p) => ({ x: p.x, y: p.y }))
            touch(element)
          }
          if (fields.includes('label') && element.label && obj.label?.bounds) {
            Object.assign(element.label, rounded(obj.label.bounds))
            touch(element.label)
          }
          if (fields.includes('attrs')) touch(element)
        } else {
          if (fields.includes('attrs') && isConnection(element)) this.reconnect(element, touch)
          if (fields.includes('attrs')) this.relabel(element, touch)
          if (fields.includes('parent')) structural = true
          touch(element)
        }
      }
    }

    // 5. Canvas parents follow semantic parents (a task moved into a pool, a pool added ...).
    if (structural) {
      for (const element of this.registry.getAll()) {
        if (isLabel(element) || !element.parent || !element.businessObject) continue
        if (!REPARENTED.some((type) => is(element, type))) continue
        const parent = this.visualParent(element.businessObject)
        if (parent && parent !== element.parent) this.reparent(element, parent, touch)
      }
    }

    const elements = [...changed].filter((e) => this.registry.get(e.id) === e)
    if (elements.length) this.eventBus.fire('elements.changed', { elements })
    return elements
  }

  /** Whether bpmn-js shows `di`: a plane of a subprocess, or on a plane a canvas root shows. */
  shown (di) {
    if (is(di, 'bpmndi:BPMNPlane')) return is(di.bpmnElement, 'bpmn:SubProcess')
    const plane = di.$parent
    return this.canvas.getRootElements().some((root) => root.di === plane)
  }

  remove (element, touch) {
    const canvas = this.canvas
    if (!this.registry.get(element.id)) return
    if (element.label) canvas.removeShape(element.label)
    for (const connection of [...(element.incoming ?? []), ...(element.outgoing ?? [])]) {
      // A flow whose end is gone (someone deleted the task while another connected it):
      // not drawn until its end is back.
      if (connection.di) this.waiting.add(connection.di)
      this.remove(connection, touch)
    }
    for (const attacher of [...(element.attachers ?? [])]) attacher.host = null
    if (element.host) collectionRemove(element.host.attachers, element)
    for (const child of [...(element.children ?? [])]) {
      if (!isLabel(child)) this.reparent(child, element.parent, touch)
    }
    if (isConnection(element)) {
      collectionRemove(element.source?.outgoing, element)
      collectionRemove(element.target?.incoming, element)
      canvas.removeConnection(element)
    } else {
      canvas.removeShape(element)
    }
    if (element.parent) touch(element.parent)
  }

  reparent (element, parent, touch) {
    if (!parent || element.parent === parent) return
    collectionRemove(element.parent?.children, element)
    collectionAdd(parent.children, element)
    element.parent = parent
    touch(element)
    if (element.label) {
      collectionRemove(element.label.parent?.children, element.label)
      collectionAdd(parent.children, element.label)
      element.label.parent = parent
      touch(element.label)
    }
  }

  reconnect (connection, touch) {
    const bo = connection.businessObject
    const source = bo.sourceRef && this.registry.get(bo.sourceRef.id)
    const target = bo.targetRef && this.registry.get(bo.targetRef.id)
    if (source && source !== connection.source && !Array.isArray(bo.sourceRef)) {
      collectionRemove(connection.source?.outgoing, connection)
      connection.source = source
      collectionAdd(source.outgoing, connection)
      touch(connection)
    }
    if (target && target !== connection.target) {
      collectionRemove(connection.target?.incoming, connection)
      connection.target = target
      collectionAdd(target.incoming, connection)
      touch(connection)
    }
  }

  relabel (element, touch) {
    const bo = element.businessObject
    if (!isLabelExternal(bo)) return
    const text = getLabel(element)
    if (!element.label && text && element.di) {
      touch(this.importer.addLabel(bo, element.di, element))
    } else if (element.label) {
      element.label.hidden = !text
      touch(element.label)
    }
  }

  switchRoot (oldRoot, plane, touch) {
    const bo = plane.bpmnElement
    const newRoot = this.factory.createRoot({ id: bo.id, type: bo.$type, businessObject: bo, di: plane })
    const active = this.canvas.getRootElement() === oldRoot
    this.canvas.addRootElement(newRoot)
    for (const child of [...oldRoot.children]) this.reparent(child, newRoot, touch)
    if (active) this.canvas.setRootElement(newRoot)
    this.canvas.removeRootElement(oldRoot)
    oldRoot.di = null
  }

  /** The canvas element a semantic object is drawn inside, as bpmn-js's importer places it. */
  visualParent (bo) {
    if (is(bo, 'bpmn:Participant') || is(bo, 'bpmn:MessageFlow')) return this.container(bo.$parent)
    if (is(bo, 'bpmn:Lane')) {
      const owner = bo.$parent?.$parent
      if (is(owner, 'bpmn:Lane')) return this.registry.get(owner.id) ?? this.container(owner)
      return this.container(owner)
    }
    if (is(bo, 'bpmn:DataAssociation')) {
      const container = this.container(bo.$parent?.$parent)
      return container && this.canvas.findRoot(container)
    }
    if (is(bo, 'bpmn:DataInput') || is(bo, 'bpmn:DataOutput')) return this.container(bo.$parent?.$parent)
    return this.container(bo.$parent)
  }

  container (parent) {
    if (!parent) return null
    const roots = this.canvas.getRootElements()
    if (is(parent, 'bpmn:SubProcess')) {
      const shape = this.registry.get(parent.id)
      if (shape && !shape.collapsed) return shape
      return this.registry.get(parent.id + '_plane') ?? shape ?? null
    }
    if (is(parent, 'bpmn:Process')) {
      const participant = this.registry.find((e) =>
        !isLabel(e) && is(e, 'bpmn:Participant') && e.businessObject.processRef === parent)
      if (participant) return participant
      return roots.find((r) => r.businessObject === parent) ?? this.canvas.getRootElement()
    }
    if (is(parent, 'bpmn:Collaboration')) {
      return roots.find((r) => r.businessObject === parent) ?? this.canvas.getRootElement()
    }
    if (is(parent, 'bpmn:Definitions')) return this.canvas.getRootElement()
    return this.container(parent.$parent)
  }
}

function rounded (bounds) {
  return {
    x: Math.round(bounds.x),
    y: Math.round(bounds.y),
    width: Math.round(bounds.width),
    height: Math.round(bounds.height)
  }
}

function depth (element) {
  let n = 0
  for (let e = element.parent; e; e = e.parent) n++
  return n
}

function semanticDepth (bo) {
  let n = 0
  for (let o = bo?.$parent; o; o = o.$parent) n++
  return n
}

/** Planes, then shapes (outer before inner, hosts before boundary events), then edges. */
function drawingOrder (dis) {
  const rank = (di) => {
    if (is(di, 'bpmndi:BPMNPlane')) return 0
    if (is(di, 'bpmndi:BPMNEdge')) return 3
    const bo = di.bpmnElement
    if (is(bo, 'bpmn:Participant')) return 1
    if (is(bo, 'bpmn:BoundaryEvent')) return 2.5
    return 2
  }
  return dis.sort((a, b) => (rank(a) - rank(b)) || (semanticDepth(a.bpmnElement) - semanticDepth(b.bpmnElement)))
}

/** The DI objects of the shown diagrams that draw `bo`. */
function diOf (definitions, bo) {
  const found = []
  for (const diagram of definitions.diagrams ?? []) {
    const plane = diagram.plane
    if (!plane) continue
    if (plane.bpmnElement === bo) found.push(plane)
    for (const di of plane.planeElement ?? []) if (di.bpmnElement === bo) found.push(di)
  }
  return found
}
