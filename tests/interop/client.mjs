// One collaborator on a live diagram, using the official Yjs client stack (yjs + y-websocket
// over `ws`), exactly as a browser studio would. Driven by tests/interop/test_interop.py.
//
// Usage: node client.mjs '<json>' where <json> is
//   {
//     "url": "ws://host:port/collab",       // `url` from POST /api/diagrams/{id}/collaborate
//     "room": "<diagram id>",
//     "token": "<room token>",               // omitted or null: connect without ?token=
//     "name": "alice",                       // only for messages
//     "edits": [Edit, ...],                  // applied once synced, one transaction each
//     "expect": [Expect, ...],               // wait until the document shows all of these
//     "expectDenied": false,                 // wait for the server's permission-denied message
//     "expectClose": null,                   // a close code: wait for the server to close instead
//     "timeoutMs": 20000
//   }
//   Edit:   {"op": "set", "root": "elements", "key": "<id>", "path": ["attrs", "name"], "value": v}
//           {"op": "add", "root": "elements" | "di", "key": "<id>", "entry": {...}}
//             (an entry's object values - attrs, text, body, labelAttrs, font - become nested
//             Y.Maps, everything else is set as is; without "order" it is put after the last
//             sibling under the same parent)
//   Expect: {"root": "di", "key": "<id>", "path": ["bounds"], "equals": v}
//
// Prints one JSON object per line on stdout: {"event": "synced"}, {"event": "edited"},
// {"event": "denied", "reason"}, {"event": "closed", "code", "reason"}, and finally
// {"event": "done", "doc": {meta, elements, di, raw}}. Exits 0 once done; on a timeout or an
// unexpected close it prints {"event": "error", "message"}, says why on stderr and exits 1.

import * as Y from 'yjs'
import { WebsocketProvider, messageAuth } from 'y-websocket'
import { readAuthMessage } from 'y-protocols/auth'
import WebSocket from 'ws'

const ROOTS = ['meta', 'elements', 'di', 'raw']
const MAP_FIELDS = new Set(['attrs', 'text', 'body', 'labelAttrs', 'font'])

const args = JSON.parse(process.argv[2] ?? '{}')
const name = args.name ?? 'client'
const timeoutMs = args.timeoutMs ?? 20000

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const CLOSE_WAIT_MS = 5000

let finished = false
const finish = async (code, event) => {
  if (finished) return
  finished = true
  clearTimeout(timer)
  // Our own edits may still sit in the socket's buffer (a client that sees everything on its
  // first sync finishes right after editing). Close with a handshake and exit once it is done:
  // the server reads frames in order, so it has handled every update we sent by then.
  const ws = provider.ws
  const closed = ws == null || ws.readyState === WebSocket.CLOSED
    ? Promise.resolve()
    : new Promise((resolve) => {
      ws.once('close', resolve)
      setTimeout(resolve, CLOSE_WAIT_MS).unref()
    })
  provider.destroy()
  await closed
  if (code !== 0) process.stderr.write(`${name}: ${event.message}\n`)
  // Exit only once stdout is flushed: it may be a pipe.
  process.stdout.write(JSON.stringify(event) + '\n', () => process.exit(code))
}
const fail = (message) => finish(1, { event: 'error', message })

const doc = new Y.Doc()
const params = args.token == null ? {} : { token: args.token }
const provider = new WebsocketProvider(args.url, args.room, doc, {
  params,
  WebSocketPolyfill: WebSocket,
  disableBc: true, // separate processes: nothing to share, and nothing must bypass the server
  maxBackoffTime: 500
})

const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms waiting for ${pending()}`), timeoutMs)

// What is still awaited, for the timeout message.
let synced = false
let edited = false
let denied = false
const pending = () => {
  if (args.expectClose != null) return `the server to close with ${args.expectClose}`
  if (!synced) return 'the first sync'
  const missing = (args.expect ?? []).filter((want) => !satisfied(want))
  const parts = missing.map((want) => `${want.root}[${want.key}].${(want.path ?? []).join('.')}`)
  if (args.expectDenied && !denied) parts.push('permission denied')
  return parts.length ? parts.join(', ') : 'nothing (bug)'
}

// The server tells a viewer once that its changes are refused (auth message, permission denied).
// y-websocket only logs it, so take over its handler to see it.
provider.messageHandlers[messageAuth] = (_encoder, decoder) => {
  readAuthMessage(decoder, doc, (_doc, reason) => {
    denied = true
    emit({ event: 'denied', reason })
    check()
  })
}

provider.on('connection-close', (event) => {
  if (finished || event == null) return
  emit({ event: 'closed', code: event.code, reason: String(event.reason ?? '') })
  if (args.expectClose != null) {
    if (event.code === args.expectClose) finish(0, { event: 'done', doc: snapshot() })
    else fail(`closed with ${event.code} (${event.reason}), expected ${args.expectClose}`)
  } else {
    fail(`the server closed the connection: ${event.code} ${event.reason}`)
  }
})

provider.on('sync', (isSynced) => {
  if (!isSynced || synced || finished) return
  synced = true
  emit({ event: 'synced' })
  if (args.expectClose != null) {
    fail(`synced, but the server should have closed with ${args.expectClose}`)
    return
  }
  try {
    for (const edit of args.edits ?? []) applyEdit(edit)
  } catch (error) {
    fail(`edit failed: ${error.stack ?? error}`)
    return
  }
  edited = true
  emit({ event: 'edited' })
  check()
})

doc.on('update', () => check())

function check () {
  if (finished || !edited) return
  if (args.expectDenied && !denied) return
  if (!(args.expect ?? []).every(satisfied)) return
  finish(0, { event: 'done', doc: snapshot() })
}

function snapshot () {
  return Object.fromEntries(ROOTS.map((root) => [root, doc.getMap(root).toJSON()]))
}

function lookup (root, key, path) {
  let value = doc.getMap(root).get(key)
  for (const step of path ?? []) {
    if (!(value instanceof Y.Map)) return undefined
    value = value.get(step)
  }
  return value instanceof Y.AbstractType ? value.toJSON() : value
}

function satisfied (want) {
  return canonical(lookup(want.root, want.key, want.path)) === canonical(want.equals)
}

function canonical (value) {
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort()
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

function applyEdit (edit) {
  const root = doc.getMap(edit.root)
  if (edit.op === 'set') {
    doc.transact(() => {
      let target = root.get(edit.key)
      const path = edit.path ?? []
      for (const step of path.slice(0, -1)) {
        if (!(target instanceof Y.Map)) break
        target = target.get(step)
      }
      if (!(target instanceof Y.Map)) {
        throw new Error(`${edit.root}[${edit.key}].${path.join('.')}: no such map`)
      }
      target.set(path[path.length - 1], edit.value)
    })
  } else if (edit.op === 'add') {
    if (root.has(edit.key)) throw new Error(`${edit.root}[${edit.key}] exists already`)
    const fields = { ...edit.entry }
    if (fields.order == null) fields.order = orderAfterSiblings(edit.root, fields.parent ?? '')
    doc.transact(() => {
      const entry = new Y.Map()
      root.set(edit.key, entry)
      for (const [field, value] of Object.entries(fields)) {
        if (MAP_FIELDS.has(field)) {
          const map = new Y.Map()
          entry.set(field, map)
          for (const [k, v] of Object.entries(value)) map.set(k, v)
        } else {
          entry.set(field, value)
        }
      }
    })
  } else {
    throw new Error(`unknown edit op ${JSON.stringify(edit.op)}`)
  }
}

// A fractional index after every sibling: keys are strings over 0-9A-Za-z that never end in
// "0" (docs/crdt-schema.md), so the largest sibling key followed by any other digit is greater.
function orderAfterSiblings (rootName, parent) {
  const roots = rootName === 'elements' ? ['elements', 'raw'] : [rootName]
  let last = ''
  for (const name of roots) {
    for (const entry of doc.getMap(name).values()) {
      if (!(entry instanceof Y.Map) || entry.get('parent') !== parent) continue
      const order = entry.get('order')
      if (typeof order === 'string' && order > last) last = order
    }
  }
  return last + 'V'
}
