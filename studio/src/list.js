// /studio: the diagram list (create, open, rename, delete, search) through the REST API.

import { api, ApiError } from './api.js'
import { claims, signOut } from './session.js'
import { escape, when } from './html.js'

export function openList (app) {
  const user = claims()
  app.dataset.state = 'list'
  app.innerHTML = `
    <header class="bar">
      <strong>bpmn-collab studio</strong>
      <span class="spacer"></span>
      <span class="who">${escape(user?.name ?? user?.sub ?? '')} · ${escape(user?.org ?? '')}</span>
      <button id="signout" type="button">Sign out</button>
    </header>
    <main class="list">
      <form id="create" class="row">
        <input id="new-title" placeholder="New diagram title" required maxlength="200" />
        <button type="submit">Create</button>
      </form>
      <form id="search" class="row">
        <input id="q" type="search" placeholder="Search titles" />
        <button type="submit">Search</button>
      </form>
      <p id="message" class="message" hidden></p>
      <table id="diagrams">
        <thead><tr><th>Title</th><th>Version</th><th>Updated</th><th></th></tr></thead>
        <tbody></tbody>
      </table>
      <button id="more" type="button" hidden>More</button>
    </main>`
  const body = app.querySelector('tbody')
  const message = app.querySelector('#message')
  let cursor = null
  let query = ''

  const say = (text) => {
    message.hidden = !text
    message.textContent = text ?? ''
  }
  const failed = (error) => {
    if (error instanceof ApiError && error.status === 401) {
      signOut()
      window.location.reload()
      return
    }
    say(error.message)
  }

  const row = (d) => {
    const tr = document.createElement('tr')
    tr.dataset.id = d.id
    tr.innerHTML = `
      <td><a href="/studio/${encodeURIComponent(d.id)}">${escape(d.title)}</a></td>
      <td>${d.version}</td>
      <td>${escape(when(d.updatedAt))}</td>
      <td class="actions">
        <button type="button" data-action="rename">Rename</button>
        <button type="button" data-action="delete">Delete</button>
      </td>`
    tr.querySelector('[data-action=rename]').addEventListener('click', async () => {
      const title = window.prompt('New title', d.title)
      if (!title || title === d.title) return
      try {
        const saved = await api.rename(d.id, title, d.version)
        tr.replaceWith(row(saved))
      } catch (error) { failed(error) }
    })
    tr.querySelector('[data-action=delete]').addEventListener('click', async () => {
      if (!window.confirm(`Delete "${d.title}"?`)) return
      try {
        await api.remove(d.id)
        tr.remove()
      } catch (error) { failed(error) }
    })
    return tr
  }

  const load = async (more = false) => {
    try {
      const page = await api.list({ q: query, cursor: more ? cursor : null })
      if (!more) body.replaceChildren()
      for (const d of page.data) body.appendChild(row(d))
      cursor = page.nextCursor
      app.querySelector('#more').hidden = !page.hasMore
      say(body.children.length ? '' : 'No diagrams yet.')
      app.dataset.state = 'list-ready'
    } catch (error) { failed(error) }
  }

  app.querySelector('#create').addEventListener('submit', async (event) => {
    event.preventDefault()
    try {
      const created = await api.create(app.querySelector('#new-title').value)
      window.location.assign(`/studio/${encodeURIComponent(created.id)}`)
    } catch (error) { failed(error) }
  })
  app.querySelector('#search').addEventListener('submit', (event) => {
    event.preventDefault()
    query = app.querySelector('#q').value.trim()
    load()
  })
  app.querySelector('#more').addEventListener('click', () => load(true))
  app.querySelector('#signout').addEventListener('click', () => {
    signOut()
    window.location.reload()
  })
  load()
}
