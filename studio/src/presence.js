// Who is here, and where: each editor's name and colour, pointer and selection, through the
// provider's awareness (y-protocols). Drawn on a canvas layer in diagram coordinates, so the
// marks follow zoom and scroll.

const SVG = 'http://www.w3.org/2000/svg'
const POINTER_INTERVAL_MS = 50

function svg (name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name)
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value)
  if (parent) parent.appendChild(node)
  return node
}

export class Presence {
  constructor ({ modeler, awareness, user, onPeople = () => {} }) {
    this.modeler = modeler
    this.awareness = awareness
    this.user = user
    this.onPeople = onPeople
    this.canvas = modeler.get('canvas')
    this.registry = modeler.get('elementRegistry')
    this.eventBus = modeler.get('eventBus')
    this.layer = this.canvas.getLayer('collab-presence', 2000)
    this.layer.classList.add('collab-presence')
    this.lastPointer = 0
    this.listeners = []
  }

  start () {
    const { awareness, eventBus } = this
    awareness.setLocalStateField('user', this.user)
    awareness.setLocalStateField('selection', [])

    const render = () => this.render()
    awareness.on('change', render)
    this.listeners.push(() => awareness.off('change', render))
    for (const event of ['elements.changed', 'root.set', 'canvas.viewbox.changed']) {
      eventBus.on(event, render)
      this.listeners.push(() => eventBus.off(event, render))
    }
    const onSelection = ({ newSelection }) => {
      awareness.setLocalStateField('selection', newSelection.filter((e) => e.type !== 'label').map((e) => e.id))
    }
    eventBus.on('selection.changed', onSelection)
    this.listeners.push(() => eventBus.off('selection.changed', onSelection))

    const container = this.canvas.getContainer()
    const onMove = (event) => {
      const now = Date.now()
      if (now - this.lastPointer < POINTER_INTERVAL_MS) return
      this.lastPointer = now
      const box = container.getBoundingClientRect()
      const viewbox = this.canvas.viewbox()
      awareness.setLocalStateField('pointer', {
        x: Math.round(viewbox.x + (event.clientX - box.left) / viewbox.scale),
        y: Math.round(viewbox.y + (event.clientY - box.top) / viewbox.scale),
        root: this.canvas.getRootElement()?.id
      })
    }
    const onLeave = () => awareness.setLocalStateField('pointer', null)
    container.addEventListener('pointermove', onMove)
    container.addEventListener('pointerleave', onLeave)
    this.listeners.push(() => {
      container.removeEventListener('pointermove', onMove)
      container.removeEventListener('pointerleave', onLeave)
    })
    render()
  }

  /** Everyone in the room, this editor first: [{clientId, name, color, self}]. */
  people () {
    const people = []
    for (const [clientId, state] of this.awareness.getStates()) {
      if (!state?.user) continue
      people.push({ clientId, ...state.user, self: clientId === this.awareness.clientID })
    }
    return people.sort((a, b) => (b.self - a.self) || String(a.name).localeCompare(b.name))
  }

  render () {
    const layer = this.layer
    while (layer.firstChild) layer.removeChild(layer.firstChild)
    const root = this.canvas.getRootElement()?.id
    const scale = this.canvas.viewbox().scale || 1
    for (const [clientId, state] of this.awareness.getStates()) {
      if (clientId === this.awareness.clientID || !state?.user) continue
      const { name, color } = state.user
      for (const id of state.selection ?? []) {
        const element = this.registry.get(id)
        if (!element || element.type === 'label') continue
        const box = bounds(element)
        if (!box) continue
        svg('rect', {
          class: 'collab-selection',
          'data-element': id,
          'data-user': name,
          x: box.x - 5,
          y: box.y - 5,
          width: box.width + 10,
          height: box.height + 10,
          rx: 6,
          fill: 'none',
          stroke: color,
          'stroke-width': 2.5 / scale,
          'stroke-dasharray': `${6 / scale} ${3 / scale}`
        }, layer)
      }
      const pointer = state.pointer
      if (pointer && (!pointer.root || pointer.root === root)) {
        const g = svg('g', {
          class: 'collab-cursor',
          'data-user': name,
          transform: `translate(${pointer.x}, ${pointer.y}) scale(${1 / scale})`
        }, layer)
        svg('path', { d: 'M0,0 L0,16 L4.5,12 L8,19 L10.5,18 L7,11 L13,11 Z', fill: color, stroke: 'white', 'stroke-width': 1 }, g)
        const label = svg('g', { transform: 'translate(12, 20)' }, g)
        const text = svg('text', { x: 6, y: 13, 'font-size': 12, 'font-family': 'sans-serif', fill: 'white' }, label)
        text.textContent = name
        svg('rect', { x: 0, y: 0, width: 12 + 7 * String(name).length, height: 18, rx: 4, fill: color }, label)
        label.appendChild(text) // on top of its background
      }
    }
    this.onPeople(this.people())
  }

  destroy () {
    for (const off of this.listeners) off()
    this.awareness.setLocalState(null)
  }
}

function bounds (element) {
  if (element.waypoints) {
    const xs = element.waypoints.map((p) => p.x)
    const ys = element.waypoints.map((p) => p.y)
    const x = Math.min(...xs)
    const y = Math.min(...ys)
    return { x, y, width: Math.max(...xs) - x, height: Math.max(...ys) - y }
  }
  if (typeof element.x !== 'number') return null
  return { x: element.x, y: element.y, width: element.width, height: element.height }
}
