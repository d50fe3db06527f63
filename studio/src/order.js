// Fractional order keys, as bpmn/order.py makes them: strings over 0-9A-Za-z (ASCII order, so
// JavaScript and Python compare them alike) that never end in "0". A port of key_between.

const DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const BASE = DIGITS.length
const VALUE = new Map([...DIGITS].map((digit, value) => [digit, value]))

export function isKey (key) {
  return typeof key === 'string' && key.length > 0 && !key.endsWith('0') &&
    [...key].every((c) => VALUE.has(c))
}

/** A key strictly between `before` and `after` (null: open end). */
export function keyBetween (before, after) {
  if (before != null && !isKey(before)) throw new Error(`not an order key: ${before}`)
  if (after != null && !isKey(after)) throw new Error(`not an order key: ${after}`)
  const low = before ?? ''
  if (after != null && low >= after) throw new Error(`order keys out of order: ${before} >= ${after}`)
  if (after == null && before != null) return increment(before)
  return midpoint(low, after ?? null)
}

function increment (key) {
  const padded = key.padEnd(Math.max(key.length, 2), '0')
  for (let position = padded.length - 1; position >= 0; position--) {
    const value = VALUE.get(padded[position])
    if (value < BASE - 1) return padded.slice(0, position) + DIGITS[value + 1]
  }
  return padded + DIGITS[1]
}

function midpoint (low, high) {
  if (high !== null) {
    let common = 0
    while (common < high.length && (common < low.length ? low[common] : '0') === high[common]) {
      common++
    }
    if (common) return high.slice(0, common) + midpoint(low.slice(common), high.slice(common))
  }
  const lowDigit = low ? VALUE.get(low[0]) : 0
  const highDigit = high !== null ? VALUE.get(high[0]) : BASE
  if (highDigit - lowDigit > 1) return DIGITS[Math.floor((lowDigit + highDigit) / 2)]
  if (high !== null && high.length > 1) return high[0]
  return DIGITS[lowDigit] + midpoint(low.slice(1), null)
}
