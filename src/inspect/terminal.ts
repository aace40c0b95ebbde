/** Text for a terminal, safe from what it contains. */

import { escapeControls } from '../core/untrusted.js'

// One escape for the CLI and for the diagnostics of unverified tokens.
export { escapeControls }

/** {@link escapeControls} line by line, for text whose line feeds are the program's own. */
export function escapeLines (text: string): string {
  return text.split('\n').map(escapeControls).join('\n')
}
