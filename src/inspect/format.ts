import { escapeControls } from './terminal.js'
import { iso } from './describe.js'
import { show, type InspectReport, type InspectStep } from './validate.js'

export const EXIT = Object.freeze({
  valid: 0,
  invalid: 1,
  usage: 2,
  unreachable: 3
} as const)

export function exitCodeOf (report: InspectReport): 0 | 1 | 3 {
  if (report.validation !== null) {
    if (report.validation.valid) return EXIT.valid
    return report.validation.problem?.type === 'auth_oidc_error' ? EXIT.unreachable : EXIT.invalid
  }
  return report.token === null ? EXIT.invalid : EXIT.valid
}

function indent (text: string, by = '  '): string {
  return text.split('\n').map(line => by + line).join('\n')
}

const MARK: Readonly<Record<InspectStep['status'], string>> = { pass: 'pass', fail: 'FAIL', skip: 'skip' }

/** Every line escaped: a value can neither drive the terminal nor start a line of its own. */
export function formatReport (report: InspectReport): string {
  const out: string[] = []
  const { token, decodeError, validation } = report
  if (token === null) {
    out.push(`Not a decodable JWT: ${decodeError?.detail ?? 'unknown error'}`)
  } else {
    // JSON.stringify escapes line breaks inside strings, so its own newlines are the only ones.
    out.push('Header', ...indent(JSON.stringify(token.header, null, 2)).split('\n'), '')
    out.push('Claims', ...indent(JSON.stringify(token.claims, null, 2)).split('\n'), '')
    out.push(token.summary)
    const id = token.identity
    const who: Array<[string, string | undefined]> = [
      ['tenant (tid)', id.tenantId],
      [`${id.isAppOnly ? 'service principal' : 'user'} (oid)`, id.objectId],
      ['subject (sub)', id.subject],
      [`client app (${id.version === '1.0' ? 'appid' : 'azp'})`, id.clientId],
      ['name', id.name],
      ['scopes and roles', id.scopes.length === 0 ? undefined : id.scopes.join(' ')]
    ]
    for (const [label, value] of who) if (value !== undefined) out.push(`  ${label.padEnd(26)}${value}`)
    for (const time of token.times) {
      out.push(`  ${time.claim.padEnd(26)}${time.iso === undefined ? show(time.value) : `${time.iso} (${time.relative})`}`)
    }
    for (const note of token.notes) out.push(`  note: ${note}`)
  }
  if (validation === null) {
    if (token !== null) out.push('', 'Decoded only, not validated: pass --client-id with --tenant or --oidc-endpoint to validate.')
    return out.map(escapeControls).join('\n') + '\n'
  }
  out.push('', `Validation for client ID ${validation.clientId} at ${iso(validation.at / 1000) ?? validation.at}`, `  discovery ${validation.discoveryUrl}`)
  const width = Math.max(...validation.steps.map(step => step.name.length))
  for (const step of validation.steps) {
    const problem = step.problem === undefined ? '' : `  [${step.problem}]`
    out.push(`  ${MARK[step.status]}  ${step.name.padEnd(width)}  ${step.status === 'skip' ? step.title : step.detail}${problem}`)
  }
  out.push('')
  if (validation.valid) {
    const id = validation.identity
    out.push(`VALID${id === null ? '' : `: ${id.isAppOnly ? 'app' : 'user'} ${id.objectId ?? id.subject ?? '?'} of tenant ${id.tenantId ?? '?'} via client ${id.clientId ?? '?'}`}`)
  } else if (validation.problem !== null) {
    const p = validation.problem
    out.push(`${exitCodeOf(report) === EXIT.unreachable ? 'NO VERDICT' : 'INVALID'}: ${p.type} (${p.status} ${p.title})`, `  ${p.detail}`)
  }
  return out.map(escapeControls).join('\n') + '\n'
}
