// The live room: y-websocket's provider, with a fresh room token on every (re)connect and the
// server's close codes (docs/protocol.md) turned into what the user should do.

import { WebsocketProvider } from 'y-websocket'
import { ApiError } from './api.js'

// What each refusal means for the user; `action` names the button the page offers.
export const CLOSE_CODES = {
  4400: { message: 'The server refused a message from this editor.', action: 'reload' },
  4401: { message: 'Your room token expired; getting a new one.', action: 'retry' },
  4403: { message: 'You may not open this diagram here (forbidden).', action: 'list' },
  4404: { message: 'This diagram does not exist (or is not in your organization).', action: 'list' },
  4409: { message: 'The diagram was reset by a save elsewhere. Reload to continue.', action: 'reload' }
}

const MAX_TOKEN_RETRIES = 3

/**
 * status(): 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'closed'
 * Events through the callbacks: onStatus(status), onSynced(), onProblem({code, message, action}).
 */
export class Connection {
  constructor ({ api, diagramId, doc, onStatus = () => {}, onSynced = () => {}, onProblem = () => {} }) {
    this.api = api
    this.diagramId = diagramId
    this.doc = doc
    this.onStatus = onStatus
    this.onSynced = onSynced
    this.onProblem = onProblem
    this.status = 'connecting'
    this.role = null
    this.provider = null
    this.reconnecting = null
    this.tokenRetries = 0
    this.closed = false
    this.lastClose = null
    this.online = () => this.reconnectNow()
    this.offline = () => {
      this.setStatus('offline')
      if (this.provider?.ws) this.provider.disconnect() // fires connection-close: reconnect loop
    }
  }

  setStatus (status) {
    if (this.status === status) return
    this.status = status
    this.onStatus(status)
  }

  async start () {
    const join = await this.api.collaborate(this.diagramId)
    this.role = join.role
    this.provider = new WebsocketProvider(join.url, this.diagramId, this.doc, {
      params: { token: join.token },
      connect: false,
      disableBc: true, // every change goes through the server, even between tabs
      maxBackoffTime: 4000
    })
    const provider = this.provider
    provider.on('status', ({ status }) => {
      if (status === 'connected') {
        this.tokenRetries = 0
        this.setStatus('connected')
      }
    })
    provider.on('sync', (synced) => { if (synced) this.onSynced() })
    provider.on('connection-close', (event) => {
      // Reconnect ourselves, with a fresh token: the provider's own retry would reuse the old one.
      provider.shouldConnect = false
      this.lastClose = event ? { code: event.code, reason: event.reason } : null
      if (this.closed) return
      const code = event?.code
      if (CLOSE_CODES[code] && code !== 4401) return this.fail(code)
      if (code === 4401) {
        if (++this.tokenRetries > MAX_TOKEN_RETRIES) return this.fail(4401)
        this.onProblem({ code, ...CLOSE_CODES[code] })
      }
      this.scheduleReconnect()
    })
    window.addEventListener('online', this.online)
    window.addEventListener('offline', this.offline)
    if (navigator.onLine === false) this.setStatus('offline')
    provider.connect()
  }

  fail (code) {
    this.closed = true
    this.setStatus('closed')
    this.onProblem({ code, ...CLOSE_CODES[code], fatal: true })
  }

  scheduleReconnect () {
    if (this.reconnecting || this.closed) return
    this.setStatus(navigator.onLine === false ? 'offline' : 'reconnecting')
    this.reconnecting = (async () => {
      let delay = 250
      while (!this.closed) {
        if (navigator.onLine !== false) {
          try {
            const join = await this.api.collaborate(this.diagramId)
            this.role = join.role
            this.provider.params.token = join.token
            this.provider.connect()
            return
          } catch (error) {
            if (error instanceof ApiError && error.status === 401) {
              this.closed = true
              this.setStatus('closed')
              this.onProblem({ code: 401, message: 'Your sign-in expired: sign in again.', action: 'signin', fatal: true })
              return
            }
            if (error instanceof ApiError && error.status === 404) return this.fail(4404)
          }
        }
        this.setStatus(navigator.onLine === false ? 'offline' : 'reconnecting')
        await new Promise((resolve) => { this.wake = resolve; setTimeout(resolve, delay) })
        delay = Math.min(delay * 2, 5000)
      }
    })().finally(() => { this.reconnecting = null })
  }

  reconnectNow () {
    if (this.wake) this.wake()
    if (!this.provider?.wsconnected && !this.provider?.wsconnecting) this.scheduleReconnect()
  }

  destroy () {
    this.closed = true
    window.removeEventListener('online', this.online)
    window.removeEventListener('offline', this.offline)
    this.provider?.destroy()
  }
}
