// XML bytes -> the text bpmn-js imports. Its importer reads text and warns on any declared
// encoding but UTF-8, so the bytes are decoded as their declaration says (a MIWG file may be
// ISO-8859-1) and the declaration then names UTF-8, which the text now is.

const DECLARATION = /^\uFEFF?\s*<\?xml[^>]*\?>/
const ENCODING = /^\uFEFF?\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']/

export function xmlText (bytes) {
  const head = new TextDecoder('latin1').decode(bytes.subarray(0, 256))
  const declared = ENCODING.exec(head)?.[1] ?? 'utf-8'
  let decoder
  try {
    decoder = new TextDecoder(declared)
  } catch {
    decoder = new TextDecoder('utf-8')
  }
  return decoder.decode(bytes).replace(DECLARATION, '<?xml version="1.0" encoding="UTF-8"?>')
}
