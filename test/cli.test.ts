/**
 * The token debugger's output, in-process: attacker-chosen strings are escaped in everything it
 * prints, and an unreachable identity provider has its own exit code. The CLI as a process is
 * in test/e2e/cli.test.ts.
 */
import t from 'tap'
import { describeToken } from '../src/inspect/describe.js'
import { exitCodeOf, formatReport } from '../src/inspect/format.js'
import { inspectToken } from '../src/inspect/validate.js'
import { escapeControls, escapeLines } from '../src/inspect/terminal.js'
import { FakeEntra } from '../src/testing/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const entra = new FakeEntra()
t.teardown(() => entra.close())

const segment = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** Anything a terminal would act on, except line feeds. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

const hostileHeader = { alg: 'RS256', kid: '\u001b[2J\u001b[H\u001b[32mVALID\u001b[0m', x5t: '\u009b2J\u007f' }
const hostileClaims = {
  ver: '2.0',
  iss: entra.issuer,
  sub: '\nVALID: user admin of tenant contoso\r\n',
  name: '\u001b]52;c;ZXZpbA==\u0007 \u202eevil\u202c \u2066x\u2069 \u200f',
  oid: '\u2028line\u2029',
  tid: '\u0085next line'
}
const hostile = `${segment(hostileHeader)}.${segment(hostileClaims)}.c2ln`

t.test('control characters are escaped in everything the report prints', async t => {
  const decoded = formatReport({ token: describeToken(hostile), decodeError: null, validation: null })
  t.notMatch(decoded, UNPRINTABLE)
  t.notMatch(decoded, /^VALID/m, 'no line of its own for a value')
  t.match(decoded, /\\u001b\]52;c;ZXZpbA==\\u0007/, 'OSC 52 shown, not run')
  t.match(decoded, /\\u202eevil\\u202c/, 'bidi override shown')
  t.match(decoded, /\\u009b2J\\u007f/, 'C1 CSI and DEL shown')
  t.match(decoded, /\\u2028line\\u2029/)
  t.match(decoded, /\\u0085next line/)

  const validated = await inspectToken(hostile, { clientId: API_ID, ...entra.pluginOptions() })
  const text = formatReport(validated)
  t.notMatch(text, UNPRINTABLE, 'validation steps too (kid in the key step)')
  t.notMatch(text, /^VALID/m)
  t.match(text, /^INVALID: /m)
  t.match(text, /kid \\u001b\[2J/)
})

t.test('escapeControls and escapeLines', async t => {
  t.equal(escapeControls('a\u001bb\nc\u202e'), 'a\\u001bb\\u000ac\\u202e')
  t.equal(escapeLines('a\u001b\nb\u0085'), 'a\\u001b\nb\\u0085', 'keeps the program\'s own line feeds')
  t.equal(escapeControls('Zoë 日本 ✓'), 'Zoë 日本 ✓', 'printable text is left alone')
  t.same(JSON.parse(escapeLines(JSON.stringify({ name: '\u009b\u202e' }, null, 2))), { name: '\u009b\u202e' }, 'escaped JSON is still the same JSON')
})

t.test('exit codes: valid 0, invalid 1, provider unreachable 3', async t => {
  const token = entra.token(API_ID)
  t.equal(exitCodeOf(await inspectToken(token, { clientId: API_ID, ...entra.pluginOptions() })), 0)
  t.equal(exitCodeOf(await inspectToken(entra.token(API_ID, { exp: 1 }), { clientId: API_ID, ...entra.pluginOptions() })), 1)
  entra.mode = 'discovery-404'
  t.teardown(() => { entra.mode = 'ok' })
  const unreachable = await inspectToken(token, { clientId: API_ID, ...entra.pluginOptions() })
  t.equal(unreachable.validation?.problem?.type, 'auth_oidc_error')
  t.equal(exitCodeOf(unreachable), 3)
  entra.mode = 'jwks-404'
  t.equal(exitCodeOf(await inspectToken(token, { clientId: API_ID, ...entra.pluginOptions() })), 3)
})
