import { escapeControls } from '../core/untrusted.js'

export { escapeControls }

export function escapeLines (text: string): string {
  return text.split('\n').map(escapeControls).join('\n')
}
