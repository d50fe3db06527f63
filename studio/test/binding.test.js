// The binding's pure half, without a browser: moddle trees <-> the CRDT document the server made.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { FIXTURES, fixtures, docOf, clientOf } from './helpers.js'
import { KEYS } from '../src/schema.js'
import { changedFields, diView, elementView, walk } from '../src/model.js'
import { diffWalks, isEmptyDiff, writeDiff } from '../src/ywrite.js'
import { applyToModel, attach, detach } from '../src/remote.js'
import { changedKeys } from '../src/changes.js'

const skip = FIXTURES ? false : 'STUDIO_FIXTURES is not set (tests/test_studio_unit.py sets it)'
const LOCAL = Symbol('local')

/** Views of the document that the walk does not match, ignoring references moddle cannot resolve. */
function mismatches (client, doc) {
  const problems = []
  const parentType = (key) => client.index.elements.get(key)?.obj.$type ?? null
  for (const [root, viewOf] of [['elements', elementView], ['di', diView]]) {
    const map = doc.getMap(root)
    for (const [key, { view }] of client.index[root]) {
      const other = viewOf(client.moddle, client.namespaces, map.get(key), parentType)
      if (!other) {
        problems.push(`${root}/${key} is not in the document`)
        continue
      }
      if (other.refs) {
        for (const [local, ids] of Object.entries(other.refs)) {
          other.refs[local] = ids.filter((id) => client.index.elements.has(id))
          if (!other.refs[local].length) delete other.refs[local]
        }
      }
      for (const field of changedFields(view, other)) {
        problems.push(`${root}/${key}.${field}: ${JSON.stringify(view[field])} != ${JSON.stringify(other[field])}`)
      }
    }
    for (const key of map.keys()) {
      const other = viewOf(client.moddle, client.namespaces, map.get(key), parentType)
      if (other && other.type !== 'bpmndi:BPMNLabelStyle' && !client.index[root].has(key)) {
        problems.push(`${root}/${key} (${other.type}) has no moddle object`)
      }
    }
  }
  return problems
}

test('every entry of every MIWG reference diagram reads the same from moddle and from the document', { skip }, async () => {
  const all = fixtures()
  assert.ok(all.length >= 20, `only ${all.length} fixtures`)
  for (const fixture of all) {
    const doc = docOf(fixture)
    const client = await clientOf(fixture.xml, doc)
    assert.deepEqual(mismatches(client, doc), [], fixture.name)
  }
})

/** Two clients on one document, each with its moddle tree; edits go A -> Y -> B. */
async function pair (fixture) {
  const docA = docOf(fixture)
  const docB = docOf(fixture)
  const a = await clientOf(fixture.xml, docA)
  const b = await clientOf(fixture.xml, docB)
  docA.on('update', (update, origin) => { if (origin !== 'remote') Y.applyUpdate(docB, update, 'remote') })
  docB.on('update', (update, origin) => { if (origin !== 'remote') Y.applyUpdate(docA, update, 'remote') })
  for (const [client, doc] of [[a, docA], [b, docB]]) {
    const roots = { elements: doc.getMap(KEYS.ELEMENTS), di: doc.getMap(KEYS.DI) }
    const pending = { elements: new Set(), di: new Set() }
    for (const root of ['elements', 'di']) {
      roots[root].observeDeep((events, transaction) => {
        if (transaction.origin === LOCAL) return
        for (const key of changedKeys(roots[root], events)) pending[root].add(key)
      })
    }
    doc.on('afterTransaction', (transaction) => {
      if (transaction.origin === LOCAL || (!pending.elements.size && !pending.di.size)) return
      const report = applyToModel(client, doc, pending)
      client.reports.push(report)
      pending.elements = new Set()
      pending.di = new Set()
      client.index = walk(client, client.definitions, client.anon)
    })
    client.reports = []
    client.doc = doc
    client.commit = () => {
      const now = walk(client, client.definitions, client.anon)
      const diff = diffWalks(client.index, now)
      client.index = now
      if (!isEmptyDiff(diff)) doc.transact(() => writeDiff(doc, client.moddle, diff), LOCAL)
      return diff
    }
  }
  return [a, b]
}

function byId (client, id) {
  return client.index.elements.get(id)?.obj ?? client.index.di.get(id)?.obj
}

function sameWalks (a, b) {
  for (const root of ['elements', 'di']) {
    assert.deepEqual([...a.index[root].keys()].sort(), [...b.index[root].keys()].sort(), `${root} keys`)
    for (const [key, { view }] of a.index[root]) {
      assert.deepEqual(b.index[root].get(key).view, view, `${root}/${key}`)
    }
  }
}

const A20 = () => fixtures().find((f) => f.name === 'A.2.0')
const PROCESS = 'WFP-6-'
const PLANE = '~di/WFP-6-'
const TASK_1 = '_5a972b87-735d-454a-b31c-f52fb3afc5c7'

test('create, rename, move, connect and delete reach the other client through the document', { skip }, async () => {
  const [a, b] = await pair(A20())
  const { moddle } = a
  const process = byId(a, PROCESS)
  const plane = byId(a, PLANE)

  // Create a task with its shape, as bpmn-js's modeling does to the moddle tree.
  const task = moddle.create('bpmn:Task', { id: 'Task_new', name: 'Archive' })
  attach(process, task)
  const shape = moddle.create('bpmndi:BPMNShape', {
    id: 'Task_new_di', bpmnElement: task, bounds: moddle.create('dc:Bounds', { x: 800, y: 100, width: 100, height: 80 })
  })
  attach(plane, shape)
  let diff = a.commit()
  assert.deepEqual(diff.elements.added.map(([key]) => key), ['Task_new'])
  assert.deepEqual(diff.di.added.map(([key]) => key), ['Task_new_di'])
  const entry = a.doc.getMap(KEYS.ELEMENTS).get('Task_new')
  assert.equal(entry.get(KEYS.TYPE), 'semantic:task') // the document's own prefix
  assert.equal(entry.get(KEYS.PARENT), PROCESS)
  assert.equal(a.doc.getMap(KEYS.DI).get('Task_new_di').get(KEYS.ELEMENT), 'Task_new')
  sameWalks(a, b)
  assert.equal(byId(b, 'Task_new').name, 'Archive')
  assert.equal(byId(b, 'Task_new').$parent, byId(b, PROCESS))

  // Rename and move: only those keys change.
  task.name = 'Archive the case'
  shape.bounds.x = 840
  diff = a.commit()
  assert.deepEqual(diff.elements.changed.map(([key, , , fields]) => [key, fields]), [['Task_new', ['attrs']]])
  assert.deepEqual(diff.di.changed.map(([key, , , fields]) => [key, fields]), [['Task_new_di', ['bounds']]])
  sameWalks(a, b)
  assert.deepEqual(b.reports.at(-1).updated.map((u) => [u.key, u.fields]), [['Task_new', ['attrs']], ['Task_new_di', ['bounds']]])

  // Connect Task 1 -> the new task.
  const source = byId(a, TASK_1)
  const flow = moddle.create('bpmn:SequenceFlow', { id: 'Flow_new', sourceRef: source, targetRef: task })
  attach(process, flow)
  source.get('outgoing').push(flow)
  task.get('incoming').push(flow)
  const edge = moddle.create('bpmndi:BPMNEdge', {
    id: 'Flow_new_di',
    bpmnElement: flow,
    waypoint: [moddle.create('dc:Point', { x: 300, y: 140 }), moddle.create('dc:Point', { x: 840, y: 140 })]
  })
  attach(plane, edge)
  a.commit()
  sameWalks(a, b)
  const flowB = byId(b, 'Flow_new')
  assert.equal(flowB.sourceRef, byId(b, TASK_1))
  assert.equal(flowB.targetRef, byId(b, 'Task_new'))
  assert.ok(byId(b, 'Task_new').incoming.includes(flowB), 'derived incoming is kept')

  // B deletes the task and its flow; A follows.
  for (const id of ['Flow_new_di', 'Task_new_di', 'Flow_new', 'Task_new']) detach(byId(b, id))
  b.commit()
  sameWalks(a, b)
  assert.equal(byId(a, 'Task_new'), undefined)
  assert.ok(!process.flowElements.includes(task))
  assert.equal(a.doc.getMap(KEYS.ELEMENTS).get('Task_new'), undefined)
})

test('concurrent edits of two clients converge', { skip }, async () => {
  // Two clients apart (offline), each editing, then exchanging state as a reconnect does.
  const fixture = A20()
  const docA = docOf(fixture)
  const docB = docOf(fixture)
  const left = await clientOf(fixture.xml, docA)
  const right = await clientOf(fixture.xml, docB)
  for (const [client, doc] of [[left, docA], [right, docB]]) {
    client.doc = doc
    client.commit = () => {
      const now = walk(client, client.definitions, client.anon)
      const diff = diffWalks(client.index, now)
      client.index = now
      doc.transact(() => writeDiff(doc, client.moddle, diff), LOCAL)
    }
  }
  byId(left, TASK_1).name = 'left name'
  left.commit()
  byId(right, PLANE).planeElement.find((s) => s.bpmnElement?.id === TASK_1).bounds.y = 333
  right.commit()
  const catchUp = (from, to, client) => {
    const changed = { elements: new Set(), di: new Set() }
    const roots = { elements: to.getMap(KEYS.ELEMENTS), di: to.getMap(KEYS.DI) }
    const handlers = {}
    for (const root of ['elements', 'di']) {
      handlers[root] = (events) => { for (const key of changedKeys(roots[root], events)) changed[root].add(key) }
      roots[root].observeDeep(handlers[root])
    }
    Y.applyUpdate(to, Y.encodeStateAsUpdate(from, Y.encodeStateVector(to)), 'remote')
    for (const root of ['elements', 'di']) roots[root].unobserveDeep(handlers[root])
    applyToModel(client, to, changed)
    client.index = walk(client, client.definitions, client.anon)
  }
  catchUp(docA, docB, right)
  catchUp(docB, docA, left)
  sameWalks(left, right)
  assert.equal(byId(left, TASK_1).name, 'left name')
  assert.equal(byId(right, TASK_1).name, 'left name')
  const boundsOf = (client) => byId(client, PLANE).planeElement.find((s) => s.bpmnElement?.id === TASK_1).bounds.y
  assert.equal(boundsOf(left), 333)
  assert.equal(boundsOf(right), 333)
})
