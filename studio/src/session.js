// Development sign-in: the user token (`bpmn-collab token --user ada --org acme`) is kept for
// the browser session (sessionStorage), or taken once from the URL's #token=... fragment.

const KEY = 'bpmn-collab.token'

export function takeTokenFromUrl () {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash)
  if (!match) return
  setToken(decodeURIComponent(match[1]))
  const rest = window.location.hash.replace(/(^#|&)token=[^&]+/, '').replace(/^#&?/, '')
  window.history.replaceState(null, '', window.location.pathname + window.location.search + (rest ? '#' + rest : ''))
}

export function getToken () {
  return window.sessionStorage.getItem(KEY)
}

export function setToken (token) {
  window.sessionStorage.setItem(KEY, token.trim())
}

export function signOut () {
  window.sessionStorage.removeItem(KEY)
}

/** The claims of the user token (not verified here: the server does that). */
export function claims (token = getToken()) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return JSON.parse(atob(part.padEnd(part.length + (4 - part.length % 4) % 4, '=')))
  } catch {
    return null
  }
}

/** A stable colour for a user name. */
export function colourOf (name) {
  let hash = 0
  for (const char of String(name)) hash = (hash * 31 + char.codePointAt(0)) >>> 0
  return `hsl(${hash % 360}, 70%, 42%)`
}
