/**
 * Text taken from a token nobody vouched for (its signature did not verify, or was never checked),
 * made safe for diagnostics: a subscriber that logs it or a terminal that shows it must not get a
 * 20 KB string, a forged log line or an escape sequence.
 */

/** The longest text a fact of an unverified token is published as, in characters. */
export const UNTRUSTED_MAX_LENGTH = 128

/**
 * C0 controls (ESC starts CSI and OSC sequences: colours, cursor moves, OSC 52 clipboard writes),
 * DEL, C1 controls (8-bit CSI/OSC), line separators, and the Unicode bidirectional controls that
 * reorder text (CVE-2021-42574).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/**
 * Escapes every character a terminal would interpret as `\uXXXX` (JSON's own escape, so JSON
 * stays valid), line feeds included: a value can't start a line of its own.
 */
export function escapeControls (text: string): string {
  return text.replace(UNPRINTABLE, character => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * A fact read from an unverified token, as diagnostics may carry it: strings (and objects, as
 * JSON) escaped with {@link escapeControls} and cut to {@link UNTRUSTED_MAX_LENGTH} characters,
 * ending in `…` when cut; numbers, booleans, null and undefined as they are.
 */
export function untrustedFact (value: unknown): unknown {
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return value
  return untrustedText(typeof value === 'string' ? value : JSON.stringify(value) ?? String(value))
}

/** {@link untrustedFact} for text. */
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
