/** Text from a token nobody vouched for, made safe for logs and terminals: no 20 KB strings, forged lines or escapes. */

export const UNTRUSTED_MAX_LENGTH = 128

/** C0/C1 controls, DEL, line separators and bidirectional controls (CVE-2021-42574). */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

export function escapeControls (text: string): string {
  return text.replace(UNPRINTABLE, character => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

export function untrustedFact (value: unknown): unknown {
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return value
  return untrustedText(typeof value === 'string' ? value : JSON.stringify(value) ?? String(value))
}

export function untrustedText (text: string): string {
  // Cut before escaping too: a 64 KiB value is not escaped whole to keep 128 characters of it.
  const escaped = escapeControls(text.length > UNTRUSTED_MAX_LENGTH ? text.slice(0, UNTRUSTED_MAX_LENGTH) : text)
  if (escaped.length <= UNTRUSTED_MAX_LENGTH && text.length <= UNTRUSTED_MAX_LENGTH) return escaped
  let end = UNTRUSTED_MAX_LENGTH - 1
  // Never cut an escape (`\u001b`) or a surrogate pair in two.
  const escape = escaped.lastIndexOf('\\u', end - 1)
  if (escape >= 0 && escape + 6 > end) end = escape
  const last = escaped.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end--
  return `${escaped.slice(0, end)}…`
}
