// The REST API (README "API at a glance"), with the session's user token.

import { getToken } from './session.js'

export class ApiError extends Error {
  constructor (status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`)
    this.status = status
    this.problem = problem
  }
}

async function call (method, path, { json, query, headers, bytes = false } = {}) {
  const url = new URL(path, window.location.origin)
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, value)
  }
  const init = { method, headers: { Authorization: `Bearer ${getToken()}`, ...headers } }
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(json)
  }
  const response = await fetch(url, init)
  if (!response.ok) {
    let problem = null
    try { problem = await response.json() } catch {}
    throw new ApiError(response.status, problem)
  }
  if (response.status === 204) return null
  if (bytes) return new Uint8Array(await response.arrayBuffer())
  const type = response.headers.get('Content-Type') ?? ''
  return type.includes('json') ? response.json() : response.text()
}

const diagram = (id) => `/api/diagrams/${encodeURIComponent(id)}`

export const api = {
  list: ({ q, cursor, limit = 50 } = {}) => call('GET', '/api/diagrams', { query: { q, cursor, limit } }),
  create: (title) => call('POST', '/api/diagrams', { json: { title } }),
  summary: (id) => call('GET', `${diagram(id)}/summary`),
  rename: (id, title, expectedVersion) => call('PUT', diagram(id), { json: { title, expectedVersion } }),
  remove: (id) => call('DELETE', diagram(id)),
  freshXml: (id) => call('GET', `${diagram(id)}/xml`, { query: { fresh: 1 }, bytes: true }),
  versions: (id) => call('GET', `${diagram(id)}/versions`, { query: { limit: 30 } }),
  restore: (id, rev, expectedVersion) =>
    call('POST', `${diagram(id)}/versions/${rev}/restore`, { json: { expectedVersion } }),
  collaborate: (id) => call('POST', `${diagram(id)}/collaborate`)
}
