// The reference y-websocket server (@y/websocket-server) as its own `y-websocket` binary runs
// it, but on the host and port given on the command line:
//
//   node y-websocket.mjs HOST PORT
//
// Same set-up as the package's src/server.js: its `setupWSConnection` behind a plain Node
// HTTP server, no persistence (YPERSISTENCE unset), no callback, Yjs garbage collection on.
// The `ws` module is the one the package itself resolves (its own dependency), not whichever
// version another package here brought, so the server is the one its users run.
// Prints one line "ready HOST PORT" once listening; exits on SIGTERM or SIGINT.

import http from 'node:http'
import { createRequire } from 'node:module'

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

const [host, portText] = process.argv.slice(2)
const port = Number.parseInt(portText ?? '', 10)
if (!LOOPBACK.has(host) || !(port > 0 && port < 65536)) {
  console.error('usage: node y-websocket.mjs HOST PORT  (HOST: 127.0.0.1, ::1 or localhost)')
  process.exit(2)
}
for (const name of ['YPERSISTENCE', 'CALLBACK_URL']) {
  // Either would change what is measured (a LevelDB write per update, an HTTP call). The
  // package reads them when it loads, hence the import below comes after this.
  delete process.env[name]
}
const { setupWSConnection } = await import('@y/websocket-server/utils')

const packageRequire = createRequire(import.meta.resolve('@y/websocket-server/package.json'))
const WebSocket = packageRequire('ws')

const wss = new WebSocket.Server({ noServer: true })
const server = http.createServer((_request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/plain' })
  response.end('okay')
})
wss.on('connection', setupWSConnection)
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, ws => {
    wss.emit('connection', ws, request)
  })
})

const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

server.listen(port, host, () => {
  console.log(`ready ${host} ${port}`)
})
