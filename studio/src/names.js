// Qualified names as the CRDT document writes them ("semantic:task", "bpmndi:BPMNShape",
// "task" under a default namespace) <-> moddle type names ("bpmn:Task", "bpmndi:BPMNShape").

import { WELL_KNOWN_PREFIX } from './schema.js'

const upperFirst = (s) => s.charAt(0).toUpperCase() + s.slice(1)
const lowerFirst = (s) => s.charAt(0).toLowerCase() + s.slice(1)

export function splitName (name) {
  const colon = name.indexOf(':')
  return colon < 0 ? ['', name] : [name.slice(0, colon), name.slice(colon + 1)]
}

/** The local part of an id reference that may carry a prefix ("tns:Task_1" -> "Task_1"). */
export function bareId (value) {
  const text = String(value).trim()
  const colon = text.indexOf(':')
  return colon < 0 ? text : text.slice(colon + 1)
}

/** The namespace bindings of a document's `meta.namespaces`: prefix -> uri, uri -> prefix. */
export class Namespaces {
  constructor (bindings) {
    this.uriOf = new Map()
    this.prefixOf = new Map()
    for (const [prefix, uri] of bindings ?? []) {
      if (!this.uriOf.has(prefix)) this.uriOf.set(prefix, uri)
      if (!this.prefixOf.has(uri)) this.prefixOf.set(uri, prefix)
    }
  }

  /** The prefix to write a name of `uri` with: the document's own, else the well-known one. */
  prefixFor (uri) {
    if (this.prefixOf.has(uri)) return this.prefixOf.get(uri)
    return WELL_KNOWN_PREFIX[uri] ?? 'ns1'
  }
}

function lowerCaseTags (pkg) {
  return pkg?.xml?.tagAlias === 'lowerCase'
}

const SIMPLE = new Set(['String', 'Boolean', 'Integer', 'Real', 'Element'])

function packageOf (moddle, namespaces, name) {
  const [prefix, local] = splitName(name)
  const uri = namespaces.uriOf.get(prefix)
  const pkg = uri === undefined ? null : moddle.getPackage(uri)
  return [pkg, local]
}

/**
 * The moddle type of a qualified tag, or null when moddle does not know it. As moddle's reader
 * does: a tag naming a property of the parent's type (`ioSpecification`, `childLaneSet`,
 * `conditionExpression`) is of that property's type, or of the type `xsiType` names.
 */
export function moddleType (moddle, namespaces, tag, parentType = null, xsiType = null) {
  if (typeof tag !== 'string') return null
  const [pkg, local] = packageOf(moddle, namespaces, tag)
  if (!pkg) return null
  if (xsiType) {
    const [typePkg, typeLocal] = packageOf(moddle, namespaces, xsiType.includes(':') ? xsiType : `${splitName(tag)[0] ? splitName(tag)[0] + ':' : ''}${xsiType}`)
    if (typePkg) {
      for (const candidate of [typeLocal, typeLocal.replace(/^t(?=[A-Z])/, '')]) {
        const name = `${typePkg.prefix}:${upperFirst(candidate)}`
        if (moddle.registry.typeMap[name]) return name
      }
    }
  }
  if (parentType && moddle.registry.typeMap[parentType]) {
    const p = moddle.getType(parentType).$descriptor.propertiesByName[`${pkg.prefix}:${local}`]
    if (p && !p.isAttr && !p.isReference && !SIMPLE.has(p.type)) return p.type
  }
  const name = `${pkg.prefix}:${lowerCaseTags(pkg) ? upperFirst(local) : local}`
  return moddle.registry.typeMap[name] ? name : null
}

/** [package, local name] of the tag moddle writes `obj` with (under its $parent). */
function tagOf (moddle, obj) {
  const [pkgPrefix, local] = splitName(obj.$type)
  const pkg = moddle.getPackage(pkgPrefix)
  const parent = obj.$parent
  if (parent && parent.$descriptor) {
    const p = parent.$descriptor.properties.find((q) =>
      !q.isReference && !q.isAttr && (q.isMany ? (parent[q.name] ?? []).includes(obj) : parent[q.name] === obj))
    if (p && p.xml?.serialize) return [moddle.getPackage(p.ns.prefix), p.ns.localName]
  }
  return [pkg, lowerCaseTags(pkg) ? lowerFirst(local) : local]
}

/** The qualified tag to write a moddle object with in this document (under its $parent). */
export function qualifiedTag (moddle, namespaces, obj) {
  const [pkg, local] = tagOf(moddle, obj)
  const prefix = namespaces.prefixFor(pkg.uri)
  return prefix ? `${prefix}:${local}` : local
}

// Attributes of these packages are written without a prefix (the BPMN and DI schemas' own).
const OWN = new Set(['bpmn', 'bpmndi', 'di', 'dc'])

/** The attribute name a moddle property is written with in this document. */
export function attributeName (moddle, namespaces, p) {
  if (OWN.has(p.ns.prefix)) return p.ns.localName
  const prefix = namespaces.prefixFor(moddle.getPackage(p.ns.prefix).uri)
  return `${prefix}:${p.ns.localName}`
}

/** The moddle property an attribute name as written means on `desc`, or null. */
export function attributeProperty (moddle, namespaces, desc, name) {
  if (!desc) return null
  let key = name
  if (name.includes(':')) {
    const [pkg, local] = packageOf(moddle, namespaces, name)
    if (!pkg || OWN.has(pkg.prefix)) return null
    key = `${pkg.prefix}:${local}`
  }
  const p = desc.propertiesByName[key]
  return p && p.isAttr && !p.isId ? p : null
}

/** The XML local name of a moddle object's tag ("laneSet", "ioSpecification", "BPMNShape"). */
export function tagLocalName (moddle, obj) {
  return tagOf(moddle, obj)[1]
}
