// /studio/{id}: the live editor. Joins the room, shows the document's XML once, then keeps
// bpmn-js and the document in step (binding.js), with presence, status and version history.

import 'bpmn-js/dist/assets/diagram-js.css'
import 'bpmn-js/dist/assets/bpmn-js.css'
import 'bpmn-js/dist/assets/bpmn-font/css/bpmn-embedded.css'
import * as Y from 'yjs'
import { api, ApiError } from './api.js'
import { Binding } from './binding.js'
import { Connection } from './connection.js'
import { Presence } from './presence.js'
import { claims, colourOf, signOut } from './session.js'
import { escape, when } from './html.js'
import { xmlText } from './xmltext.js'

const STATUS_TEXT = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline: edits wait here',
  closed: 'Disconnected'
}
const SAVED_POLL_MS = 3000

export async function openEditor (app, diagramId) {
  const user = claims() ?? {}
  const name = user.name ?? user.sub ?? 'anonymous'
  app.dataset.state = 'connecting'
  app.innerHTML = `
    <header class="bar">
      <a href="/studio/" class="back">← Diagrams</a>
      <strong id="title">…</strong>
      <span id="role" class="role" hidden>read-only</span>
      <span id="status" class="status" data-status="connecting">${STATUS_TEXT.connecting}</span>
      <span id="saved" class="saved"></span>
      <span class="spacer"></span>
      <ul id="people" class="people"></ul>
      <button id="undo" type="button" title="Undo your last edit (Ctrl+Z)">Undo</button>
      <button id="redo" type="button" title="Redo (Ctrl+Y)">Redo</button>
      <button id="history-toggle" type="button">History</button>
      <button id="signout" type="button">Sign out</button>
    </header>
    <div id="problem" class="problem" hidden><span></span><button type="button"></button></div>
    <div class="workspace">
      <div id="canvas" class="canvas"></div>
      <aside id="history" class="history" hidden>
        <h2>Versions</h2>
        <ol id="versions"></ol>
      </aside>
    </div>`
  const $ = (selector) => app.querySelector(selector)
  const studio = { diagramId, importWarnings: [], errors: [] }
  window.studio = studio

  const problem = ({ code, message, action, fatal }) => {
    studio.problem = { code, message, action, fatal: Boolean(fatal) }
    const box = $('#problem')
    box.hidden = false
    box.dataset.code = String(code ?? '')
    box.querySelector('span').textContent = message
    const button = box.querySelector('button')
    const actions = {
      reload: ['Reload', () => window.location.reload()],
      list: ['Back to the diagrams', () => window.location.assign('/studio/')],
      signin: ['Sign in', () => { signOut(); window.location.reload() }],
      retry: ['Reconnect now', () => connection?.reconnectNow()]
    }
    const [label, run] = actions[action] ?? ['Dismiss', () => { box.hidden = true }]
    button.textContent = label
    button.onclick = run
    if (fatal) app.dataset.state = 'failed'
  }
  const failed = (error) => {
    studio.errors.push(String(error?.stack ?? error))
    if (error instanceof ApiError && error.status === 401) {
      return problem({ code: 401, message: 'Your sign-in expired: sign in again.', action: 'signin', fatal: true })
    }
    if (error instanceof ApiError && error.status === 404) {
      return problem({ code: 404, message: 'This diagram does not exist (or is not in your organization).', action: 'list', fatal: true })
    }
    problem({ code: error?.status ?? 0, message: `Something went wrong: ${error?.message ?? error}`, action: 'reload', fatal: true })
  }
  $('#signout').addEventListener('click', () => { signOut(); window.location.assign('/studio/') })
  $('#history-toggle').addEventListener('click', () => {
    const panel = $('#history')
    panel.hidden = !panel.hidden
    if (!panel.hidden) showVersions()
  })

  let summary
  try {
    summary = await api.summary(diagramId)
  } catch (error) {
    return failed(error)
  }
  $('#title').textContent = summary.title
  document.title = `${summary.title} — bpmn-collab studio`

  const doc = new Y.Doc()
  let resolveSynced
  const synced = new Promise((resolve) => { resolveSynced = resolve })
  const connection = new Connection({
    api,
    diagramId,
    doc,
    onStatus: (status) => {
      const element = $('#status')
      element.dataset.status = status
      element.textContent = STATUS_TEXT[status] ?? status
    },
    onSynced: () => {
      resolveSynced()
      if (studio.problem && !studio.problem.fatal) $('#problem').hidden = true
    },
    onProblem: problem
  })
  studio.doc = doc
  studio.connection = connection
  try {
    await connection.start()
  } catch (error) {
    return failed(error)
  }
  await synced
  const readOnly = connection.role === 'viewer'
  $('#role').hidden = !readOnly
  for (const button of ['#undo', '#redo']) $(button).hidden = readOnly

  const Modeler = readOnly
    ? (await import('bpmn-js/lib/NavigatedViewer')).default
    : (await import('bpmn-js/lib/Modeler')).default
  const modeler = new Modeler({ container: $('#canvas') })
  studio.modeler = modeler
  try {
    const xml = xmlText(await api.freshXml(diagramId))
    const { warnings } = await modeler.importXML(xml)
    studio.importWarnings = warnings.map((w) => w.message)
  } catch (error) {
    studio.importError = String(error?.message ?? error)
    return problem({ code: 0, message: `This diagram could not be shown: ${studio.importError}`, action: 'reload', fatal: true })
  }
  modeler.get('canvas').zoom('fit-viewport')

  const binding = new Binding({ modeler, doc, readOnly })
  binding.start()
  studio.binding = binding
  $('#undo').addEventListener('click', () => binding.undo())
  $('#redo').addEventListener('click', () => binding.redo())

  const presence = new Presence({
    modeler,
    awareness: connection.provider.awareness,
    user: { name, color: colourOf(name) },
    onPeople: (people) => {
      $('#people').replaceChildren(...people.map((person) => {
        const li = document.createElement('li')
        li.dataset.user = person.name
        li.style.setProperty('--colour', person.color)
        li.textContent = person.self ? `${person.name} (you)` : person.name
        return li
      }))
    }
  })
  presence.start()
  studio.presence = presence

  // The last version the server saved (snapshots of the live room, restores, REST saves).
  const showSaved = (s) => {
    const saved = $('#saved')
    saved.dataset.version = String(s.version)
    saved.textContent = `Saved: version ${s.version} · ${when(s.updatedAt)}`
  }
  showSaved(summary)
  const pollSaved = async () => {
    try {
      summary = await api.summary(diagramId)
      showSaved(summary)
      if (!$('#history').hidden) showVersions()
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return failed(error)
    }
  }
  const savedTimer = setInterval(() => { if (connection.status !== 'offline') pollSaved() }, SAVED_POLL_MS)

  async function showVersions () {
    try {
      const page = await api.versions(diagramId)
      $('#versions').replaceChildren(...page.data.map((v) => {
        const li = document.createElement('li')
        li.dataset.rev = String(v.rev)
        li.innerHTML = `
          <div><strong>v${v.rev}</strong> · ${escape(v.author)}</div>
          <div class="meta">${escape(when(v.createdAt))}${v.message ? ' · ' + escape(v.message) : ''}</div>`
        if (!readOnly && v.rev !== summary.version) {
          const button = document.createElement('button')
          button.type = 'button'
          button.textContent = 'Restore'
          button.addEventListener('click', async () => {
            try {
              const restored = await api.restore(diagramId, v.rev, summary.version)
              summary = { ...summary, ...restored }
              showSaved(summary)
              showVersions()
            } catch (error) {
              if (error instanceof ApiError && error.status === 409) {
                await pollSaved()
                problem({ code: 409, message: 'Someone saved meanwhile: look again and restore once more.', action: 'dismiss' })
              } else {
                failed(error)
              }
            }
          })
          li.appendChild(button)
        }
        return li
      }))
    } catch (error) {
      failed(error)
    }
  }

  window.addEventListener('beforeunload', () => {
    clearInterval(savedTimer)
    presence.destroy()
    connection.destroy()
  })
  app.dataset.state = 'ready'
}
