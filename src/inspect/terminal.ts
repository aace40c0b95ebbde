import { escapeControls } from '../core/untrusted.js'

// One escape for the CLI and for the diagnostics of unverified tokens.
export { escapeControls }

export function escapeLines (text: string): string {
  return text.split('\n').map(escapeControls).join('\n')
}
