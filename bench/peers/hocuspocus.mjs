// Hocuspocus (@hocuspocus/server) with its defaults, on the host and port given:
//
//   node hocuspocus.mjs HOST PORT
//
// No extension (no persistence, no logger), no onAuthenticate hook: every token is accepted,
// as a fresh `new Server()` does. `quiet` only drops the start-up banner, so that stdout holds
// the one line "ready HOST PORT" printed once listening. The server's own signal handling
// (stopOnSignals, on by default) destroys it and exits on SIGTERM or SIGINT.

import { Server } from '@hocuspocus/server'

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

const [host, portText] = process.argv.slice(2)
const port = Number.parseInt(portText ?? '', 10)
if (!LOOPBACK.has(host) || !(port > 0 && port < 65536)) {
  console.error('usage: node hocuspocus.mjs HOST PORT  (HOST: 127.0.0.1, ::1 or localhost)')
  process.exit(2)
}

const server = new Server({ address: host, port, quiet: true })
await server.listen()
console.log(`ready ${host} ${port}`)
