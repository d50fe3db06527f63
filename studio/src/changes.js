// Which entries a Y transaction touched, from the events of observeDeep on a root map.

/** Keys of the root map `root` that `events` (from root.observeDeep) changed. */
export function changedKeys (root, events) {
  const keys = new Set()
  for (const event of events) {
    if (event.target === root) {
      for (const key of event.keysChanged) keys.add(key)
    } else if (event.path.length) {
      keys.add(String(event.path[0]))
    }
  }
  return keys
}
