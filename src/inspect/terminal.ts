/**
 * Text for a terminal, safe from what it contains. The `inspect` CLI prints attacker-chosen
 * strings (a token's `kid`, `name`, `sub`, …); a terminal would act on some characters instead of
 * printing them.
 */

import { escapeControls } from '../core/untrusted.js'

// One escape for the CLI and for the diagnostics of unverified tokens.
export { escapeControls }

/** {@link escapeControls} line by line, for text whose line feeds are the program's own. */
export function escapeLines (text: string): string {
  return text.split('\n').map(escapeControls).join('\n')
}
