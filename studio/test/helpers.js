// Shared by the node:test suites: documents the server made (tests/test_studio_unit.py writes
// them to $STUDIO_FIXTURES: the XML it renders and the Yjs update of its CRDT document).

import fs from 'node:fs'
import path from 'node:path'
import * as Y from 'yjs'
import { BpmnModdle } from 'bpmn-moddle'
import { KEYS } from '../src/schema.js'
import { mapAnonymous, walk } from '../src/model.js'
import { Namespaces } from '../src/names.js'

export const FIXTURES = process.env.STUDIO_FIXTURES

export function fixtures () {
  if (!FIXTURES) return []
  return fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(FIXTURES, f), 'utf8')))
}

export function docOf (fixture) {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, Buffer.from(fixture.update, 'base64'))
  return doc
}

/** A client's side of the binding: its moddle tree, anon keys and last walk. */
export async function clientOf (xml, doc) {
  const moddle = new BpmnModdle()
  const { rootElement: definitions, warnings } = await moddle.fromXML(xml)
  const anon = mapAnonymous(moddle, definitions, doc.getMap(KEYS.ELEMENTS), doc.getMap(KEYS.DI))
  const namespaces = new Namespaces(doc.getMap(KEYS.META).get(KEYS.NAMESPACES))
  const ctx = { moddle, definitions, anon, warnings, namespaces }
  ctx.index = walk(ctx, definitions, anon)
  return ctx
}
