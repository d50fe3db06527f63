// The studio's one page: /studio lists diagrams, /studio/{id} edits one.

import './style.css'
import { getToken, setToken, takeTokenFromUrl } from './session.js'

const app = document.getElementById('app')

function signIn () {
  app.dataset.state = 'signin'
  app.innerHTML = `
    <main class="signin">
      <h1>bpmn-collab studio</h1>
      <p>Sign in with a user token. On the server's machine:</p>
      <pre>.venv/bin/bpmn-collab token --user ada --org acme</pre>
      <form>
        <label for="token">User token</label>
        <textarea id="token" rows="4" required placeholder="eyJ..."></textarea>
        <button type="submit">Sign in</button>
      </form>
      <p class="hint">The token is kept for this browser tab's session only.</p>
    </main>`
  app.querySelector('form').addEventListener('submit', (event) => {
    event.preventDefault()
    setToken(app.querySelector('#token').value)
    window.location.reload()
  })
}

takeTokenFromUrl()
const match = /^\/studio\/([^/]+)\/?$/.exec(window.location.pathname)
if (!getToken()) {
  signIn()
} else if (match) {
  import('./editor.js').then(({ openEditor }) => openEditor(app, decodeURIComponent(match[1])))
} else {
  import('./list.js').then(({ openList }) => openList(app))
}
