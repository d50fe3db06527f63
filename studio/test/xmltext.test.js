import { test } from 'node:test'
import assert from 'node:assert/strict'
import { xmlText } from '../src/xmltext.js'

test('bytes are decoded as declared and the declaration then says UTF-8', () => {
  const latin1 = Buffer.from('<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>\n<a name="Caf\xe9"/>', 'latin1')
  assert.equal(xmlText(new Uint8Array(latin1)), '<?xml version="1.0" encoding="UTF-8"?>\n<a name="Café"/>')
})

test('UTF-8, with or without a declaration or a byte order mark, stays as it is', () => {
  const utf8 = new TextEncoder().encode('<?xml version="1.0"?><a name="Café ✓"/>')
  assert.equal(xmlText(utf8), '<?xml version="1.0" encoding="UTF-8"?><a name="Café ✓"/>')
  assert.equal(xmlText(new TextEncoder().encode('<a name="ü"/>')), '<a name="ü"/>')
})

test('an encoding the browser does not know falls back to UTF-8', () => {
  const bytes = new TextEncoder().encode('<?xml version="1.0" encoding="x-unknown"?><a/>')
  assert.equal(xmlText(bytes), '<?xml version="1.0" encoding="UTF-8"?><a/>')
})
