import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isKey, keyBetween } from '../src/order.js'

test('keys after the last keep increasing and stay valid', () => {
  let last = null
  for (let i = 0; i < 500; i++) {
    const next = keyBetween(last, null)
    assert.ok(isKey(next), next)
    if (last !== null) assert.ok(next > last, `${next} > ${last}`)
    last = next
  }
})

test('a key between two others lies between them', () => {
  const pairs = [['1', '2'], ['U', 'V'], ['Tz', 'U'], [null, '1'], ['a', 'a1'], ['z', 'zz']]
  for (const [before, after] of pairs) {
    const key = keyBetween(before, after)
    assert.ok(isKey(key), key)
    if (before !== null) assert.ok(key > before, `${key} > ${before}`)
    assert.ok(key < after, `${key} < ${after}`)
  }
})

test('malformed and out-of-order keys are refused', () => {
  assert.throws(() => keyBetween('10', null))
  assert.throws(() => keyBetween('b', 'a'))
  assert.throws(() => keyBetween('a!', null))
})
