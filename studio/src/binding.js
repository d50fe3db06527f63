// bpmn-js <-> the CRDT document, both ways.
//
// Local: after each bpmn-js command (commandStack.changed: the outermost command and all the
// behaviours it set off are done), the moddle tree is walked again and the difference from the
// last walk is written to the document in one Y transaction with this binding's origin.
// Remote: observeDeep collects the keys another origin touched; at the end of that transaction
// the moddle objects (remote.js) and then the canvas (view.js) are brought to the document.
// Undo/redo are Y.UndoManager's, tracking this binding's origin only: a user undoes their own
// edits, never someone else's, and an undo reaches the others like any edit.

import * as Y from 'yjs'
import { KEYS } from './schema.js'
import { Namespaces } from './names.js'
import { mapAnonymous, walk } from './model.js'
import { diffWalks, isEmptyDiff, writeDiff } from './ywrite.js'
import { applyToModel } from './remote.js'
import { changedKeys } from './changes.js'
import { CanvasSync } from './view.js'

export class Binding {
  constructor ({ modeler, doc, readOnly = false }) {
    this.modeler = modeler
    this.doc = doc
    this.readOnly = readOnly
    this.origin = { binding: 'bpmn-js' } // this editor's own transactions
    this.applying = false
    this.pending = { elements: new Set(), di: new Set() }
    this.listeners = []
    this.stats = { local: 0, remote: 0 }
    this.written = [] // what the last local commits wrote (for diagnostics and tests)
  }

  /** Start binding, once importXML has shown the document's XML. */
  start () {
    const { modeler, doc } = this
    const moddle = modeler.get('moddle')
    const definitions = modeler.getDefinitions()
    const elements = doc.getMap(KEYS.ELEMENTS)
    const di = doc.getMap(KEYS.DI)
    this.ctx = { moddle, definitions, namespaces: this.namespaces() }
    this.ctx.anon = mapAnonymous(moddle, definitions, elements, di)
    this.ctx.index = walk(this.ctx, definitions, this.ctx.anon)
    this.canvas = new CanvasSync(modeler)

    // Whatever the document holds that the imported XML did not (edits made meanwhile).
    const all = (map, root) => new Set([...map.keys(), ...this.ctx.index[root].keys()])
    this.applyRemote({ elements: all(elements, 'elements'), di: all(di, 'di') })

    const observe = (map, root) => {
      const handler = (events, transaction) => {
        if (transaction.origin === this.origin) return
        for (const key of changedKeys(map, events)) this.pending[root].add(key)
      }
      map.observeDeep(handler)
      this.listeners.push(() => map.unobserveDeep(handler))
    }
    observe(elements, 'elements')
    observe(di, 'di')
    const afterTransaction = (transaction) => {
      if (transaction.origin === this.origin) return
      if (!this.pending.elements.size && !this.pending.di.size) return
      const changed = this.pending
      this.pending = { elements: new Set(), di: new Set() }
      this.applyRemote(changed)
    }
    doc.on('afterTransaction', afterTransaction)
    this.listeners.push(() => doc.off('afterTransaction', afterTransaction))

    if (!this.readOnly) {
      const eventBus = modeler.get('eventBus')
      const onCommand = () => this.commitLocal()
      eventBus.on('commandStack.changed', onCommand)
      this.listeners.push(() => eventBus.off('commandStack.changed', onCommand))
      this.undoManager = new Y.UndoManager([elements, di, doc.getMap(KEYS.RAW)], {
        trackedOrigins: new Set([this.origin]),
        captureTimeout: 0
      })
      this.takeOverUndo()
    }
  }

  namespaces () {
    return new Namespaces(this.doc.getMap(KEYS.META).get(KEYS.NAMESPACES))
  }

  /** Write what the last command changed, in one transaction. */
  commitLocal () {
    if (this.applying || !this.ctx) return
    this.ctx.namespaces = this.namespaces()
    const now = walk(this.ctx, this.ctx.definitions, this.ctx.anon)
    const diff = diffWalks(this.ctx.index, now)
    this.ctx.index = now
    if (isEmptyDiff(diff)) return
    this.stats.local++
    this.written.push(summarise(diff))
    if (this.written.length > 20) this.written.shift()
    this.doc.transact(() => writeDiff(this.doc, this.ctx.moddle, diff), this.origin)
  }

  /** Bring the moddle tree and the canvas to the document's entries under `changed`. */
  applyRemote (changed) {
    this.applying = true
    try {
      this.ctx.namespaces = this.namespaces()
      const report = applyToModel(this.ctx, this.doc, changed)
      this.canvas.apply(report, this.ctx.definitions)
      this.stats.remote++
    } finally {
      this.applying = false
      // The moddle tree now says what the document says: the base of the next local diff.
      this.ctx.index = walk(this.ctx, this.ctx.definitions, this.ctx.anon)
    }
  }

  /** Ctrl+Z / Ctrl+Y and the toolbar undo this user's own edits through the document. */
  takeOverUndo () {
    const actions = this.modeler.get('editorActions', false)
    if (!actions) return
    for (const name of ['undo', 'redo']) {
      if (actions.isRegistered(name)) actions.unregister(name)
    }
    actions.register({
      undo: () => this.undo(),
      redo: () => this.redo()
    })
  }

  undo () {
    this.modeler.get('directEditing', false)?.complete()
    this.undoManager?.undo()
  }

  redo () {
    this.modeler.get('directEditing', false)?.complete()
    this.undoManager?.redo()
  }

  destroy () {
    for (const off of this.listeners) off()
    this.listeners = []
    this.undoManager?.destroy()
  }
}

/** What a diff wrote, by root: added and removed keys, changed keys with their fields. */
function summarise (diff) {
  const out = {}
  for (const root of ['elements', 'di']) {
    out[root] = {
      added: diff[root].added.map(([key]) => key),
      removed: [...diff[root].removed],
      changed: Object.fromEntries(diff[root].changed.map(([key, , , fields]) => [key, fields]))
    }
  }
  return out
}
