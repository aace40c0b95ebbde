/**
 * Text for a terminal, safe from what it contains. The `inspect` CLI prints attacker-chosen
 * strings (a token's `kid`, `name`, `sub`, …); a terminal would act on some characters instead of
 * printing them.
 */

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

/** {@link escapeControls} line by line, for text whose line feeds are the program's own. */
export function escapeLines (text: string): string {
  return text.split('\n').map(escapeControls).join('\n')
}
