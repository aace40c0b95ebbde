/**
 * Looking into a validation: the token debugger (`describeToken`, `inspectToken`) and its output,
 * `explain()`, and the diagnostics channels. One section per subject below, each with its own
 * fixtures.
 */
import diagnostics from 'node:diagnostics_channel'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import entraAuth, { type ProblemType, CHANNELS, createEntraVerifier, EntraAuthError, type EntraVerifier, type Explanation, type ValidationStep, type KeyFetchMessage, type KeyRefreshMessage, type TokenCacheMessage, type VerifyTraceContext } from '../src/index.js'
import { describeToken } from '../src/inspect/describe.js'
import { exitCodeOf, formatReport } from '../src/inspect/format.js'
import { type InspectOptions, type InspectReport, inspectToken, type StepName } from '../src/inspect/validate.js'
import { FAKE_TENANT_ID, FakeEntra, MockClaims, MockJwk, MockJwtClient } from '../src/testing/index.js'
import { escapeControls, escapeLines } from '../src/inspect/terminal.js'
import { readFixture, testKey } from './helpers/fixtures.js'
import { entraApp, fakeEntra } from './helpers/index.js'

const CLIENT_ID = '6e1c9b1a-0000-4000-8000-00000000a11d'

/**
 * The token debugger: `describeToken` / `inspectToken` (src/inspect/) in-process, with the
 * fake Entra serving keys through the `dispatcher` option, and the real vectors of
 * test/fixtures/entra. The built CLI runs as a process in test/e2e/cli.test.ts.
 */
t.test('token debugger', async t => {
  const STEPS: StepName[] = ['structure', 'discovery', 'keys', 'key', 'signature', 'claims', 'nbf', 'exp', 'ver', 'iss', 'aud', 'sub', 'client']

  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  const user = entra.client(CLIENT_ID, 'v2')

  function options (extra: Partial<InspectOptions> = {}): InspectOptions {
    return { clientId: CLIENT_ID, ...entra.pluginOptions(), ...extra } as InspectOptions
  }

  /** Asserts a validation failed at `step` with `type`: earlier steps passed, later ones skipped. */
  function failsAt (t: Test, report: InspectReport, step: StepName, type: ProblemType): void {
    const validation = report.validation
    if (validation === null) throw new Error('not validated')
    t.equal(validation.valid, false, 'invalid')
    t.equal(validation.problem?.type, type, `problem ${type}`)
    const at = validation.steps.findIndex(s => s.status === 'fail')
    t.equal(validation.steps[at]?.name, step, `fails at ${step}`)
    t.equal(validation.steps[at]?.problem, type)
    t.ok(validation.steps.slice(0, at).every(s => s.status === 'pass'), 'earlier steps pass')
    t.ok(validation.steps.slice(at + 1).every(s => s.status === 'skip'), 'later steps are skipped')
    t.equal(validation.identity, null)
    // An unreachable provider gives no verdict: exit code 3, not 1, and the text says so.
    t.equal(exitCodeOf(report), type === 'auth_oidc_error' ? 3 : 1)
    t.match(formatReport(report), type === 'auth_oidc_error' ? /^NO VERDICT: auth_oidc_error /m : new RegExp(`^INVALID: ${type} `, 'm'))
    t.notMatch(formatReport(report), type === 'auth_oidc_error' ? /^INVALID:/m : /^NO VERDICT:/m)
  }

  function passes (t: Test, report: InspectReport, steps: StepName[] = STEPS): void {
    const validation = report.validation
    if (validation === null) throw new Error('not validated')
    t.equal(validation.valid, true, 'valid')
    t.equal(validation.problem, null)
    t.same(validation.steps.map(s => s.name), steps, 'every step, in the plugin order')
    t.ok(validation.steps.every(s => s.status === 'pass'), 'every step passes')
    t.equal(exitCodeOf(report), 0)
  }

  t.test('describeToken: version and shape of the fake presets', async t => {
    const v2 = describeToken(user.generate())
    t.match(v2, { version: '2.0', kind: 'delegated', graph: false, summary: 'Entra v2.0 delegated (user) access token' })
    t.match(v2.identity, { tenantId: FAKE_TENANT_ID, clientId: 'c0ffee00-0000-4000-8000-000000000002', isAppOnly: false, scopes: ['access_as_user'] })
    t.same(v2.notes, [])
    t.same(v2.times.map(time => time.claim), ['iat', 'nbf', 'exp'])
    t.match(v2.times[2]?.relative, /^in (60 min|1 h)$/)

    const v1 = describeToken(entra.client(CLIENT_ID, 'v1').generate())
    t.match(v1, { version: '1.0', kind: 'delegated' })
    t.equal(v1.identity.clientId, 'c0ffee00-0000-4000-8000-000000000002', 'appid')

    const app = describeToken(entra.client(CLIENT_ID, 'app').generate())
    t.match(app, { version: '2.0', kind: 'app-only', summary: 'Entra v2.0 app-only (client credentials) access token' })
    t.equal(app.identity.isAppOnly, true)

    const id = describeToken(user.generate({ scp: false, roles: false, azp: false }))
    t.equal(id.kind, 'id-token')
    t.match(id.notes.join('\n'), /ID token/)

    const graph = describeToken(user.generate({ aud: '00000003-0000-0000-c000-000000000000' }))
    t.equal(graph.graph, true)
    t.match(graph.summary, /for Microsoft Graph$/)
    t.match(graph.notes.join('\n'), /Microsoft Graph/)

    const expired = describeToken(user.generate({ exp: Math.floor(Date.now() / 1000) - 7200 }))
    t.match(expired.notes.join('\n'), /Expired 2 h ago/)

    const noVer = describeToken(user.generate({ ver: false }))
    t.equal(noVer.version, undefined)
    t.match(noVer.summary, /^Not an Entra v1\.0\/v2\.0/)
  })

  t.test('describeToken: what cannot be decoded', async t => {
    const failure = (token: string): unknown => {
      try {
        describeToken(token)
      } catch (err) {
        return err
      }
      return undefined
    }
    t.match(failure('abc'), { type: 'auth_token_invalid', detail: /1 dot-separated part/ })
    t.match(failure('a.b.c.d.e'), { type: 'auth_token_invalid', detail: /encrypted \(JWE\)/ })
    t.match(failure('e30.bm90IGpzb24.c2ln'), { type: 'auth_token_invalid', detail: /payload/ })
    t.match(failure('WzFd.e30.c2ln'), { type: 'auth_token_invalid', detail: /header is not a JSON object/ })
    const token = user.generate()
    t.equal(describeToken(`  Bearer ${token}\n`).version, '2.0', "a pasted 'Bearer ' prefix and whitespace are ignored")
  })

  t.test('inspectToken without validation options only decodes', async t => {
    const report = await inspectToken(user.generate())
    t.equal(report.validation, null)
    t.equal(report.token?.kind, 'delegated')
    t.equal(exitCodeOf(report), 0)
    t.match(formatReport(report), /Decoded only, not validated/)

    const garbage = await inspectToken('not a token')
    t.equal(garbage.token, null)
    t.equal(garbage.decodeError?.type, 'auth_token_invalid')
    t.equal(exitCodeOf(garbage), 1)
    t.match(formatReport(garbage), /^Not a decodable JWT/)
  })

  t.test('valid tokens pass every step', async t => {
    for (const preset of ['v2', 'v1', 'app'] as const) {
      await t.test(preset, async t => {
        const report = await inspectToken(entra.client(CLIENT_ID, preset).generate(), options())
        passes(t, report)
        t.match(report.validation?.identity, { tenantId: FAKE_TENANT_ID, version: preset === 'v1' ? '1.0' : '2.0', isAppOnly: preset === 'app' })
        const text = formatReport(report)
        t.match(text, /^ {2}pass {2}signature/m)
        t.match(text, /^VALID: /m)
      })
    }
    await t.test('with a route requirement', async t => {
      const report = await inspectToken(user.generate({ scp: 'Files.Read' }), options({ requirement: ['Files.Read'] }))
      passes(t, report, [...STEPS, 'scopes'])
      t.match(report.validation?.steps.at(-1)?.detail, /grants Files\.Read/)
    })
  })

  t.test('each failure class is reported at its step with its problem type', async t => {
    const now = Math.floor(Date.now() / 1000)
    const good = user.generate()
    const [header, , signature] = good.split('.')
    const otherPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(good.split('.')[1] as string, 'base64url').toString()), sub: 'someone-else' })).toString('base64url')
    const published = entra.keys[0] as MockJwk
    const impostor = new MockJwtClient({ key: new MockJwk({ kid: published.kid, privateKey: testKey('foreign') }), claims: user.claims })
    const unpublished = new MockJwtClient({ key: entra.newKey(), claims: user.claims })

    const cases: Array<{ name: string, token: string, step: StepName, type: ProblemType, options?: Partial<InspectOptions>, mode?: FakeEntra['mode'] }> = [
      { name: 'not a JWT', token: 'abc.def.ghi', step: 'structure', type: 'auth_token_invalid' },
      { name: 'alg HS256', token: user.sign({ alg: 'HS256', typ: 'JWT', kid: published.kid }, user.claims.build()), step: 'structure', type: 'auth_token_invalid' },
      { name: 'no kid', token: user.generateEmpty(), step: 'structure', type: 'auth_token_key_error' },
      { name: 'discovery down', token: good, step: 'discovery', type: 'auth_oidc_error', mode: 'discovery-404' },
      { name: 'JWKS not JSON', token: good, step: 'keys', type: 'auth_oidc_error', mode: 'jwks-not-json' },
      { name: 'unknown kid', token: unpublished.generate(), step: 'key', type: 'auth_token_key_error' },
      { name: 'payload changed', token: `${header}.${otherPayload}.${signature}`, step: 'signature', type: 'auth_token_signature_untrusted' },
      { name: 'signed by another key with the same kid', token: impostor.generate(), step: 'signature', type: 'auth_token_signature_untrusted' },
      { name: 'no azp', token: user.generate({ azp: false }), step: 'claims', type: 'auth_token_claim_missing' },
      { name: 'exp not a number', token: user.generate({ exp: String(now + 3600) }), step: 'claims', type: 'auth_token_invalid' },
      { name: 'nbf in the future', token: user.generate({ nbf: now + 600 }), step: 'nbf', type: 'auth_token_immature' },
      { name: 'expired', token: user.generate({ exp: now - 60 }), step: 'exp', type: 'auth_token_expired' },
      { name: 'unknown ver', token: user.generate({ ver: '3.0' }), step: 'ver', type: 'auth_token_ver_not_supported' },
      { name: 'v2 token, v1 only', token: good, step: 'ver', type: 'auth_token_ver_not_supported', options: { tokenVersions: ['1.0'] } },
      { name: 'other issuer', token: user.generate({ iss: 'https://login.microsoftonline.com/11111111-2222-4333-8444-555555555555/v2.0' }), step: 'iss', type: 'auth_token_issuer_untrusted' },
      { name: 'tenant not allowed', token: good, step: 'iss', type: 'auth_token_issuer_untrusted', options: { allowedTenants: ['11111111-2222-4333-8444-555555555555'] } },
      { name: 'other audience', token: user.generate({ aud: 'another-api' }), step: 'aud', type: 'auth_token_audience_invalid' },
      { name: 'subject not allowed', token: good, step: 'sub', type: 'auth_token_subject_not_trusted', options: { allowedSubjects: ['someone'] } },
      { name: 'client not allowed', token: good, step: 'client', type: 'auth_token_azp_not_trusted', options: { allowedApps: ['another-client'] } },
      { name: 'scope missing', token: good, step: 'scopes', type: 'auth_token_insufficient_scopes', options: { requirement: { scopes: ['Files.Read'] } } }
    ]
    for (const c of cases) {
      await t.test(c.name, async t => {
        entra.mode = c.mode ?? 'ok'
        try {
          const report = await inspectToken(c.token, options(c.options))
          failsAt(t, report, c.step, c.type)
        } finally {
          entra.mode = 'ok'
        }
      })
    }
  })

  t.test('failed steps show what was compared', async t => {
    const report = await inspectToken(user.generate({ aud: 'another-api' }), options())
    const aud = report.validation?.steps.find(step => step.name === 'aud')
    t.equal(aud?.detail, `aud another-api; accepted: ${CLIENT_ID}, api://${CLIENT_ID}`)
    const graph = await inspectToken(user.generate({ aud: 'https://graph.microsoft.com' }), options())
    t.match(graph.validation?.problem?.detail, /issued for Microsoft Graph/)
    const unknownKid = await inspectToken(new MockJwtClient({ key: entra.newKey('not-published'), claims: user.claims }).generate(), options())
    t.match(unknownKid.validation?.steps.find(step => step.name === 'key')?.detail, `kid not-published is not among the provider's keys: ${(entra.keys[0] as MockJwk).kid}`)
  })

  t.test('`at` pins the clock', async t => {
    // The v2 preset's claims, issued at 2023-11-14T22:13:20Z.
    const claims = Object.assign(new MockClaims({ selfAppId: CLIENT_ID }), user.claims, { now: () => 1_700_000_000_000 })
    const old = new MockJwtClient({ key: entra.keys[0] as MockJwk, claims }).generate()
    failsAt(t, await inspectToken(old, options()), 'exp', 'auth_token_expired')
    const report = await inspectToken(old, options({ at: 1_700_000_060 }))
    passes(t, report)
    t.equal(report.validation?.at, 1_700_000_060_000)
    t.match(formatReport(report), /at 2023-11-14T22:14:20Z/)
    failsAt(t, await inspectToken(old, options({ at: 1_700_003_600 })), 'exp', 'auth_token_expired')
  })

  t.test('bad options are a TypeError, never a report', async t => {
    const token = user.generate()
    await t.rejects(inspectToken(token, { clientId: CLIENT_ID } as InspectOptions), TypeError)
    await t.rejects(inspectToken(token, options({ at: Number.NaN })), TypeError)
    await t.rejects(inspectToken(token, options({ requirement: [''] })), TypeError)
  })

  const vector = (file: string): string => readFixture('entra', file)
  const V04 = {
    token: vector('04-v2-delegated-access-token.navikt.jwt'),
    jwks: JSON.parse(vector('jwks-common-v2-2024-06-18.panva-wellknown.json')) as unknown,
    tenantId: '966ac572-f5b7-4bbe-aa88-c76419c0f851',
    clientId: 'bff62dcb-88dc-4a13-9e26-1cbffb96ec64',
    at: 1718609997,
    exp: 1718614377
  }

  t.test('real Entra tokens: version and shape', async t => {
    const expected: Array<[string, '1.0' | '2.0', string]> = [
      ['01-v1-id-token.jose4j.jwt', '1.0', 'id-token'],
      ['02-v2-id-token.jose4j.jwt', '2.0', 'id-token'],
      ['03-v1-app-access-token.azure-sdk-for-js.jwt', '1.0', 'app-only'],
      ['04-v2-delegated-access-token.navikt.jwt', '2.0', 'delegated'],
      ['05-v1-delegated-access-token.passport-azure-ad.jwt', '1.0', 'delegated']
    ]
    for (const [file, version, kind] of expected) {
      const report = await inspectToken(vector(file))
      t.match(report.token, { version, kind, graph: false }, file)
      t.equal(exitCodeOf(report), 0)
    }
    const v03 = describeToken(vector('03-v1-app-access-token.azure-sdk-for-js.jwt'))
    t.match(v03.identity, { clientId: '6c8181c7-91a6-4e2e-8480-d54021ac4c4b', isAppOnly: true, scopes: [] })
    const v04 = describeToken(V04.token)
    t.match(v04.identity, { tenantId: V04.tenantId, objectId: '799a132a-93c8-427e-92f7-08cb220c879a', clientId: '5f28c10f-ecd5-45ef-96b8-db4311802e89', scopes: ['defaultaccess'] })
  })

  t.test('real Entra token 04 validates against its real JWKS at its time', async t => {
    const tenant = new FakeEntra({ tenantId: V04.tenantId })
    t.teardown(() => tenant.close())
    tenant.jwksDocument = V04.jwks
    const base = { clientId: V04.clientId, ...tenant.pluginOptions() }

    const report = await inspectToken(V04.token, { ...base, at: V04.at })
    passes(t, report)
    t.match(report.validation?.steps.find(step => step.name === 'key')?.detail, 'key issuer https://login.microsoftonline.com/{tenantid}/v2.0')
    t.match(report.validation?.identity, { tenantId: V04.tenantId, objectId: '799a132a-93c8-427e-92f7-08cb220c879a', isAppOnly: false })

    failsAt(t, await inspectToken(V04.token, { ...base, at: V04.exp }), 'exp', 'auth_token_expired')
    failsAt(t, await inspectToken(V04.token, base), 'exp', 'auth_token_expired')
    failsAt(t, await inspectToken(V04.token, { ...base, at: V04.at, clientId: CLIENT_ID }), 'aud', 'auth_token_audience_invalid')
    const flipped = V04.token.slice(0, -2) + (V04.token.at(-2) === 'A' ? 'B' : 'A') + V04.token.at(-1)
    failsAt(t, await inspectToken(flipped, { ...base, at: V04.at }), 'signature', 'auth_token_signature_untrusted')
  })

  t.test('inspect makes exactly one discovery and one JWKS fetch, for any token', async t => {
    const fake = new FakeEntra()
    t.teardown(() => fake.close())
    const user = fake.client(CLIENT_ID)
    const now = Math.floor(Date.now() / 1000)
    const tokens = {
      valid: user.generate(),
      expired: user.generate({ exp: now - 60 }),
      'other audience': user.generate({ aud: 'x' }),
      'unknown kid': new MockJwtClient({ key: fake.newKey('unpublished'), claims: user.claims }).generate(),
      'other key, same kid': new MockJwtClient({ key: new MockJwk({ kid: (fake.keys[0] as MockJwk).kid, privateKey: testKey('foreign') }), claims: user.claims }).generate(),
      'missing scope': user.generate()
    }
    for (const [name, token] of Object.entries(tokens)) {
      fake.requests.discovery = 0
      fake.requests.jwks = 0
      // The CLI's key timings are the defaults: an unknown kid refetches the key set only after the
      // cooldown (the test kit's own options set it to 0, so a key published later counts at once).
      const { jwks, ...defaults } = fake.pluginOptions()
      const options = { clientId: CLIENT_ID, ...defaults, ...(name === 'missing scope' ? { requirement: ['Nope'] } : {}) } as InspectOptions
      const report = await inspectToken(token, options)
      t.equal(report.validation?.valid, name === 'valid', `${name}: verdict`)
      t.same(fake.requests, { discovery: 1, jwks: 1 }, `${name}: one fetch of each document`)
    }
    fake.requests.discovery = 0
    fake.requests.jwks = 0
    await inspectToken('not.a.token', { clientId: CLIENT_ID, ...fake.pluginOptions() } as InspectOptions)
    t.same(fake.requests, { discovery: 0, jwks: 0 }, 'a malformed token costs no fetch')
  })

  t.test('the debugger imports neither the key store nor the claim rules', async t => {
    const dir = join(import.meta.dirname, '..', 'src')
    const files = ['cli.ts', ...readdirSync(join(dir, 'inspect')).map(file => `inspect/${file}`)]
    for (const file of files) {
      const imports = [...readFileSync(join(dir, file), 'utf8').matchAll(/from '([^']+)'/g)].map(match => match[1])
      t.notOk(imports.some(path => /(^|\/)(keys|entra\/claims|signature|jwks)\.js$/.test(path ?? '')), `${file}: ${imports.join(', ')}`)
    }
  })
})

/**
 * The token debugger's output, in-process: attacker-chosen strings are escaped in everything it
 * prints, and an unreachable identity provider has its own exit code. The CLI as a process is
 * in test/e2e/cli.test.ts.
 */
t.test('debugger output', async t => {
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
})

/**
 * `verifier.explain()` and `fastify.entraAuth.explain`: the steps the real validation ran, in the
 * order of checks, with what each compared; the verdict equals `verify`'s; no extra fetch; errors
 * of `verify` carry the step and claim they came from.
 */
t.test('explain()', async t => {
  const OTHER_TENANT = '11111111-2222-4333-8444-555555555555'
  const TOKEN_STEPS: ValidationStep[] = ['structure', 'discovery', 'keys', 'key', 'signature', 'claims', 'nbf', 'exp', 'ver', 'iss', 'aud', 'sub', 'client']

  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  const user = entra.client(CLIENT_ID, 'v2')

  function verifierWith (extra: Record<string, unknown> = {}): EntraVerifier {
    const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...entra.pluginOptions(), ...extra } as Parameters<typeof createEntraVerifier>[0])
    t.teardown(() => verifier.close())
    return verifier
  }

  async function rejection (promise: Promise<unknown>): Promise<EntraAuthError> {
    try {
      await promise
    } catch (err) {
      if (err instanceof EntraAuthError) return err
      throw err
    }
    throw new Error('did not reject')
  }

  function stepsOf (explanation: Explanation): string[] {
    return explanation.steps.map(step => `${step.step}:${step.ok ? 'ok' : 'FAIL'}`)
  }

  t.test('a valid token: every step passes, in order, with its facts', async t => {
    const verifier = verifierWith()
    const token = user.generate()
    const explanation = await verifier.explain(token)
    t.equal(explanation.valid, true)
    t.equal(explanation.problem, null)
    t.same(explanation.steps.map(step => step.step), TOKEN_STEPS)
    t.ok(explanation.steps.every(step => step.ok && step.problem === undefined && step.detail !== ''))
    t.equal(explanation.token?.tenantId, entra.tenantId)
    const facts = Object.fromEntries(explanation.steps.map(step => [step.step, step.facts]))
    const kid = (entra.keys[0] as MockJwk).kid
    t.match(facts.structure, { alg: 'RS256', kid })
    t.match(facts.discovery, { issuer: `https://login.microsoftonline.com/${entra.tenantId}/v2.0` })
    t.match(facts.keys, { kids: [kid] })
    t.match(facts.key, { kid })
    t.match(facts.iss, { iss: `https://login.microsoftonline.com/${entra.tenantId}/v2.0`, expected: [`https://login.microsoftonline.com/${entra.tenantId}/v2.0`], tid: entra.tenantId })
    t.same(facts.aud, { aud: CLIENT_ID, accepted: [CLIENT_ID, `api://${CLIENT_ID}`] })
    t.match(facts.exp, { clockTolerance: 0 })
    t.ok((facts.exp as { inSeconds: number }).inSeconds > 3000, 'exp relative to now, in seconds')
    t.ok((facts.nbf as { inSeconds: number }).inSeconds <= 0, 'nbf in the past')
    t.match(facts.client, { claim: 'azp', allowed: null })
    t.notMatch(JSON.stringify(explanation.steps), token.split('.')[2] as string, 'no step carries the token')

    const withScopes = await verifier.explain(user.generate({ scp: 'Files.Read' }), ['Files.Read'])
    t.same(withScopes.steps.map(step => step.step), [...TOKEN_STEPS, 'scopes'])
    t.match(withScopes.steps.at(-1), { ok: true, facts: { granted: ['Files.Read'], needs: '"Files.Read"' } })
  })

  t.test('each failure: explain names the step, the problem and what was compared; verify rejects with the same step and claim', async t => {
    const now = Math.floor(Date.now() / 1000)
    const published = entra.keys[0] as MockJwk
    const impostor = new MockJwtClient({ key: new MockJwk({ kid: published.kid, privateKey: testKey('foreign') }), claims: user.claims })
    const cases: Array<{ name: string, token: string, step: ValidationStep, type: string, claim?: string, facts?: object, options?: Record<string, unknown> }> = [
      { name: 'not a JWT', token: 'abc.def.ghi', step: 'structure', type: 'auth_token_invalid' },
      { name: 'no kid', token: user.generateEmpty(), step: 'structure', type: 'auth_token_key_error' },
      { name: 'unknown kid', token: new MockJwtClient({ key: entra.newKey('not-published'), claims: user.claims }).generate(), step: 'key', type: 'auth_token_key_error', facts: { kid: 'not-published', kids: [published.kid] } },
      { name: 'another key with the same kid', token: impostor.generate(), step: 'signature', type: 'auth_token_signature_untrusted', facts: { kid: published.kid } },
      { name: 'no azp', token: user.generate({ azp: false }), step: 'claims', type: 'auth_token_claim_missing', claim: 'azp', facts: { missing: 'azp' } },
      { name: 'exp a string', token: user.generate({ exp: String(now + 3600) }), step: 'claims', type: 'auth_token_invalid', claim: 'exp' },
      { name: 'not yet valid', token: user.generate({ nbf: now + 600 }), step: 'nbf', type: 'auth_token_immature', claim: 'nbf' },
      { name: 'expired', token: user.generate({ exp: now - 60 }), step: 'exp', type: 'auth_token_expired', claim: 'exp', facts: { exp: now - 60 } },
      { name: 'v2 token, v1 only', token: user.generate(), step: 'ver', type: 'auth_token_ver_not_supported', claim: 'ver', options: { tokenVersions: ['1.0'] }, facts: { ver: '2.0', accepted: ['1.0'] } },
      { name: 'other issuer', token: user.generate({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0` }), step: 'iss', type: 'auth_token_issuer_untrusted', claim: 'iss', facts: { expected: [`https://login.microsoftonline.com/${entra.tenantId}/v2.0`] } },
      { name: 'tenant not allowed', token: user.generate(), step: 'iss', type: 'auth_token_issuer_untrusted', claim: 'tid', options: { allowedTenants: [OTHER_TENANT] }, facts: { allowedTenants: [OTHER_TENANT] } },
      { name: 'other audience', token: user.generate({ aud: 'another-api' }), step: 'aud', type: 'auth_token_audience_invalid', claim: 'aud', facts: { aud: 'another-api' } },
      { name: 'subject not allowed', token: user.generate(), step: 'sub', type: 'auth_token_subject_not_trusted', claim: 'sub', options: { allowedSubjects: ['someone'] } },
      { name: 'client not allowed', token: user.generate(), step: 'client', type: 'auth_token_azp_not_trusted', claim: 'azp', options: { allowedApps: ['another-client'] }, facts: { allowed: ['another-client'] } }
    ]
    for (const c of cases) {
      await t.test(c.name, async t => {
        const verifier = verifierWith(c.options)
        const explanation = await verifier.explain(c.token)
        t.equal(explanation.valid, false)
        t.match(explanation.problem, { type: c.type, step: c.step, claim: c.claim })
        const at = TOKEN_STEPS.indexOf(c.step)
        t.same(stepsOf(explanation), [...TOKEN_STEPS.slice(0, at).map(step => `${step}:ok`), `${c.step}:FAIL`], 'earlier steps passed; it stopped at the failure')
        const failed = explanation.steps.at(-1)
        t.equal(failed?.problem, c.type)
        t.equal(failed?.detail, explanation.problem?.detail)
        if (c.facts !== undefined) t.match(failed?.facts, c.facts)

        const error = await rejection(verifier.verify(c.token))
        t.equal(error.type, c.type, 'verify rejects with the same type')
        t.equal(error.step, c.step, 'the error carries the step')
        t.equal(error.claim, c.claim, 'and the claim')
      })
    }
    await t.test('scopes', async t => {
      const explanation = await verifierWith().explain(user.generate(), { scopes: ['Files.Read'] })
      t.match(explanation.problem, { type: 'auth_token_insufficient_scopes', step: 'scopes' })
      t.match(explanation.steps.at(-1), { step: 'scopes', ok: false, facts: { granted: ['access_as_user'], needs: '"Files.Read" (delegated scope)' } })
      await t.rejects(verifierWith().explain(user.generate(), ['']), TypeError, 'a malformed requirement is a TypeError')
    })
  })

  t.test('an identity provider outage is a failed step, not a rejection', async t => {
    for (const [mode, step] of [['discovery-404', 'discovery'], ['jwks-not-json', 'keys']] as const) {
      const fake = new FakeEntra()
      fake.mode = mode
      t.teardown(() => fake.close())
      const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...fake.pluginOptions() })
      t.teardown(() => verifier.close())
      const explanation = await verifier.explain(fake.client(CLIENT_ID).generate())
      t.match(explanation.problem, { type: 'auth_oidc_error', step }, mode)
      t.match(explanation.steps.at(-1), { step, ok: false, problem: 'auth_oidc_error', facts: { lastError: String } })
      t.equal((await rejection(verifier.verify(fake.client(CLIENT_ID).generate()))).step, step)
    }
  })

  t.test('same key store and caches: explain fetches nothing more than verify', async t => {
    const fake = new FakeEntra()
    t.teardown(() => fake.close())
    const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...fake.pluginOptions() })
    t.teardown(() => verifier.close())
    const client = fake.client(CLIENT_ID)
    await verifier.explain(client.generate({ aud: 'x' }))
    await verifier.explain(client.generate())
    await verifier.verify(client.generate())
    t.same(fake.requests, { discovery: 1, jwks: 1 })
    const token = client.generate()
    await verifier.verify(token)
    const cached = await verifier.verify(token)
    t.equal(await verifier.verify(token), cached, 'cached')
    t.equal((await verifier.explain(token)).steps.length, TOKEN_STEPS.length, 'a cached token is still explained step by step')
    t.equal(await verifier.verify(token), cached, 'and stays cached as it was')
    t.same(fake.requests, { discovery: 1, jwks: 1 })
  })

  t.test('fastify.entraAuth.explain uses the plugin verifier', async t => {
    const fake = new FakeEntra()
    t.teardown(() => fake.close())
    const app = Fastify()
    await app.register(entraAuth, { clientId: CLIENT_ID, ...fake.pluginOptions() })
    t.teardown(() => app.close())
    await app.ready()
    const explanation = await app.entraAuth.explain(fake.client(CLIENT_ID).generate({ aud: 'nope' }))
    t.match(explanation.problem, { type: 'auth_token_audience_invalid', step: 'aud', claim: 'aud' })
    t.equal(app.entraAuth.explain, app.entraAuth.verifier.explain)
  })

  t.test('errors outside token validation carry their step too', async t => {
    t.equal(new EntraAuthError('auth_header_missing').step, 'request')
    t.equal(new EntraAuthError('auth_header_missing').claim, undefined)
    t.equal(new EntraAuthError('auth_token_expired').claim, 'exp')
    t.match(new EntraAuthError('auth_token_invalid', undefined, { step: 'claims', claim: 'iat' }), { step: 'claims', claim: 'iat' })
  })

  t.test('the allowedTenants predicate and requirePermissions are steps too', async t => {
    const allowed = verifierWith({ allowedTenants: async (tid: string) => tid === entra.tenantId, requirePermissions: true })
    const ok = await allowed.explain(user.generate())
    t.same(ok.steps.slice(-2).map(step => `${step.step}:${step.ok}`), ['tenant:true', 'permissions:true'])

    const refused = await verifierWith({ allowedTenants: () => false }).explain(user.generate())
    t.match(refused.problem, { type: 'auth_token_issuer_untrusted', step: 'tenant', claim: 'tid' })
    t.match(refused.steps.at(-1), { step: 'tenant', ok: false, facts: { tid: entra.tenantId } })

    const failing = verifierWith({ allowedTenants: () => { throw new Error('database down') } })
    const broken = await failing.explain(user.generate())
    t.match(broken.problem, { type: 'auth_tenant_check_error', step: 'tenant' })
    t.match(await rejection(failing.verify(user.generate())), { type: 'auth_tenant_check_error', step: 'tenant', claim: 'tid' })

    const noPermission = await verifierWith({ requirePermissions: true }).explain(user.generate({ scp: false, roles: false }))
    t.match(noPermission.problem, { type: 'auth_token_insufficient_scopes', step: 'permissions' })
    t.match(noPermission.steps.at(-1), { step: 'permissions', ok: false, facts: { scp: [], roles: [] } })
  })

  t.test('explain() never touches the token cache: it neither reads, fills, nor evicts it, nor shares a validation in flight', async t => {
    const lookups: unknown[] = []
    const onLookup = (message: unknown): void => { lookups.push(message) }
    diagnostics.subscribe(CHANNELS.tokenCache, onLookup)
    t.teardown(() => diagnostics.unsubscribe(CHANNELS.tokenCache, onLookup))
    const calls: string[] = []
    let offset = 0
    const verifier = verifierWith({ allowedTenants: (tid: string) => { calls.push(tid); return true }, now: () => Date.now() + offset })
    const token = user.generate()

    const explained = await verifier.explain(token)
    t.equal(explained.valid, true)
    t.same(verifier.state().tokenCache.size, 0, 'a valid token explained is not cached')
    t.same(lookups, [], 'no cache lookup')

    const verified = await verifier.verify(token)
    t.equal(verifier.state().tokenCache.size, 1)
    t.equal(calls.length, 2, 'verify asked the predicate itself: explain left nothing behind')
    lookups.length = 0
    const again = await verifier.explain(token)
    t.ok(again.steps.some(step => step.step === 'signature'), 'the cached token is validated afresh')
    t.not(again.token, verified, 'not the cached token object')
    t.equal(calls.length, 3, 'and the predicate asked again')
    t.same(lookups, [], 'no cache lookup')
    t.equal(await verifier.verify(token), verified, 'the cached token is still there')

    // Explaining a cached token at a time it has expired does not evict it (verify would).
    offset = 2 * 60 * 60 * 1000
    t.equal((await verifier.explain(token)).problem?.type, 'auth_token_expired')
    offset = 0
    t.equal(await verifier.verify(token), verified, 'still cached')

    // Concurrent explain() and verify() of a new token: each runs its own validation.
    const fresh = user.generate({ sub: 'concurrent' })
    calls.length = 0
    const [a, b] = await Promise.all([verifier.explain(fresh), verifier.verify(fresh)])
    t.equal(a.valid, true)
    t.not(a.token, b)
    t.equal(calls.length, 2)
  })
})

/**
 * The diagnostics channels: `fastify-entra-auth:verify` (a TracingChannel around each validation),
 * `…:keys:fetch`, `…:keys:refresh` and `…:token-cache`. Subscribers see steps, verdicts and key
 * events; no message ever carries the token.
 */
t.test('diagnostics channels', async t => {
  interface Seen { event: string, context: VerifyTraceContext, snapshot: string }

  /** Subscribes to every channel for the duration of `t`, recording what is published. */
  function listen (t: Test): { verify: Seen[], fetches: KeyFetchMessage[], refreshes: KeyRefreshMessage[], cache: TokenCacheMessage[], all: () => string } {
    const verify: Seen[] = []
    const fetches: KeyFetchMessage[] = []
    const refreshes: KeyRefreshMessage[] = []
    const cache: TokenCacheMessage[] = []
    const record = (event: string) => (message: unknown) => {
      const context = message as VerifyTraceContext
      verify.push({ event, context, snapshot: JSON.stringify({ ...context, error: context.error === undefined ? undefined : String(context.error) }) })
    }
    const handlers = { start: record('start'), end: record('end'), asyncStart: record('asyncStart'), asyncEnd: record('asyncEnd'), error: record('error') }
    const tracing = diagnostics.tracingChannel(CHANNELS.verify)
    tracing.subscribe(handlers)
    const onFetch = (message: unknown): void => { fetches.push(message as KeyFetchMessage) }
    const onRefresh = (message: unknown): void => { refreshes.push(message as KeyRefreshMessage) }
    const onCache = (message: unknown): void => { cache.push(message as TokenCacheMessage) }
    diagnostics.subscribe(CHANNELS.keysFetch, onFetch)
    diagnostics.subscribe(CHANNELS.keysRefresh, onRefresh)
    diagnostics.subscribe(CHANNELS.tokenCache, onCache)
    t.teardown(() => {
      tracing.unsubscribe(handlers)
      diagnostics.unsubscribe(CHANNELS.keysFetch, onFetch)
      diagnostics.unsubscribe(CHANNELS.keysRefresh, onRefresh)
      diagnostics.unsubscribe(CHANNELS.tokenCache, onCache)
    })
    return { verify, fetches, refreshes, cache, all: () => JSON.stringify([verify.map(seen => seen.snapshot), fetches, refreshes, cache]) }
  }

  /** A fake Entra and a standalone verifier against it, both closed at the end of the test. */
  function standalone (t: Test): { fake: FakeEntra, verifier: EntraVerifier } {
    const fake = fakeEntra(t)
    const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...fake.pluginOptions() })
    t.teardown(() => verifier.close())
    return { fake, verifier }
  }

  t.test('verify: start, end, asyncStart, asyncEnd with the steps and the verdict; key fetches and refreshes; cache miss then hit', async t => {
    const seen = listen(t)
    const { fake, verifier } = standalone(t)
    const token = fake.client(CLIENT_ID).generate()

    await verifier.verify(token)
    t.same(seen.verify.map(s => s.event), ['start', 'end', 'asyncStart', 'asyncEnd'])
    const context = seen.verify[3]?.context as VerifyTraceContext
    t.equal(seen.verify[0]?.context, context, 'one context object through the whole validation')
    t.match(context, { operation: 'verify', verdict: 'valid', cached: false, kid: fake.keys[0]?.kid, version: '2.0', tenantId: fake.tenantId })
    t.same(context.steps.map(step => step.step), ['structure', 'discovery', 'keys', 'key', 'signature', 'claims', 'nbf', 'exp', 'ver', 'iss', 'aud', 'sub', 'client'])
    t.equal(context.problem, undefined)

    t.same(seen.fetches.map(f => `${f.event}:${f.document}`), ['start:discovery', 'end:discovery', 'start:jwks', 'end:jwks'])
    t.match(seen.fetches[1], { url: fake.oidcEndpoint, durationMs: Number })
    t.same(seen.refreshes.map(r => r.event), ['start', 'end'])
    t.match(seen.refreshes[1], { kids: [fake.keys[0]?.kid] })

    await verifier.verify(token)
    t.same(seen.cache.map(c => c.event), ['miss', 'hit'])
    t.equal(seen.cache[1]?.kid, fake.keys[0]?.kid)
    const hit = seen.verify.at(-1)?.context as VerifyTraceContext
    t.match(hit, { cached: true, verdict: 'valid' })
    t.same(hit.steps.map(step => step.step), ['nbf', 'exp'], 'a cache hit checks the times again, nothing else')

    for (const part of token.split('.')) t.notOk(seen.all().includes(part), 'no message carries any part of the token')
  })

  t.test('a refused token: error before asyncStart/asyncEnd, problem, step, claim, kid', async t => {
    const seen = listen(t)
    const { fake, verifier } = standalone(t)
    const token = fake.client(CLIENT_ID).generate({ aud: 'another-api' })
    await t.rejects(verifier.verify(token), EntraAuthError)
    t.same(seen.verify.map(s => s.event), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    const context = seen.verify[4]?.context as VerifyTraceContext
    t.match(context, { verdict: 'invalid', problem: 'auth_token_audience_invalid', step: 'aud', claim: 'aud', kid: fake.keys[0]?.kid, version: '2.0', tenantId: fake.tenantId })
    t.type(context.error, EntraAuthError)
    t.match(context.steps.at(-1), { step: 'aud', ok: false, problem: 'auth_token_audience_invalid' })

    await t.rejects(verifier.verify('abc.def.ghi'))
    t.match(seen.verify.at(-1)?.context, { verdict: 'invalid', problem: 'auth_token_invalid', step: 'structure' })
    for (const part of token.split('.')) t.notOk(seen.all().includes(part), 'no message carries any part of the token')
  })

  t.test('explain and route hooks are traced too; a provider failure shows on keys:fetch and keys:refresh', async t => {
    const seen = listen(t)
    const fake = new FakeEntra()
    t.teardown(() => fake.close())
    const app = await entraApp({ clientId: CLIENT_ID, ...fake.pluginOptions() })
    t.teardown(() => app.close())
    app.get('/x', { onRequest: app.entraAuth() }, async () => 'ok')
    const token = fake.client(CLIENT_ID).generate()
    const response = await app.inject({ url: '/x', headers: { authorization: `Bearer ${token}` } })
    t.equal(response.statusCode, 200)
    t.match(seen.verify.at(-1)?.context, { operation: 'verify', verdict: 'valid' })

    const explanation = await app.entraAuth.explain(token, ['nothing-granted'])
    const context = seen.verify.at(-1)?.context as VerifyTraceContext
    t.match(context, { operation: 'explain', verdict: 'invalid', problem: 'auth_token_insufficient_scopes', step: 'scopes' })
    t.equal(context.steps, explanation.steps, 'the context holds the explanation steps')

    const down = new FakeEntra()
    down.mode = 'jwks-404'
    t.teardown(() => down.close())
    const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...down.pluginOptions() })
    t.teardown(() => verifier.close())
    await t.rejects(verifier.verify(down.client(CLIENT_ID).generate()), new EntraAuthError('auth_oidc_error', undefined, { step: 'keys' }))
    t.match(seen.fetches.at(-1), { event: 'failure', document: 'jwks', reason: String })
    t.match(seen.refreshes.at(-1), { event: 'failure', problem: 'auth_oidc_error', servingStale: false, reason: String })
  })

  t.test('the package subscribes to none of its channels itself', async t => {
    const { fake, verifier } = standalone(t)
    await verifier.verify(fake.client(CLIENT_ID).generate())
    t.equal(diagnostics.tracingChannel(CHANNELS.verify).hasSubscribers, false)
    for (const name of [CHANNELS.keysFetch, CHANNELS.keysRefresh, CHANNELS.tokenCache]) t.equal(diagnostics.hasSubscribers(name), false, name)
  })

  /** A token anyone can write: a real kid and alg, claims of one's choosing, a signature of nothing. */
  function forged (header: Record<string, unknown>, payload: Record<string, unknown>): string {
    const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
    return `${part(header)}.${part(payload)}.${Buffer.alloc(256, 7).toString('base64url')}`
  }

  // eslint-disable-next-line no-control-regex -- the point is to find control characters
  const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

  /** Every string in `value` (nested), with where it was found. */
  function strings (value: unknown, path = '', out: Array<[string, string]> = []): Array<[string, string]> {
    if (typeof value === 'string') out.push([path, value])
    else if (Array.isArray(value)) value.forEach((item, i) => strings(item, `${path}[${i}]`, out))
    else if (value !== null && typeof value === 'object' && !(value instanceof Error)) for (const [key, item] of Object.entries(value)) strings(item, `${path}.${key}`, out)
    return out
  }

  t.test('a token whose signature does not verify: no identity published, every other fact cut to 128 characters and escaped, in tracing and explain()', async t => {
    const seen = listen(t)
    const { fake, verifier } = standalone(t)
    await verifier.warm()
    const long = 'A'.repeat(20_000)
    const short = 'B'.repeat(2_000)
    const logLine = '\n{"level":50,"msg":"admin logged in"}\n\u001b[2J\u001b]52;c;ZWNobyBwd25lZA==\u0007\u202e'
    const kid = fake.keys[0]?.kid as string
    const tokens = {
      // Tokens of at most 64 KiB are decoded: a 20 KB `tid` fits.
      signature: forged({ alg: 'RS256', kid, typ: `JWT${logLine}${short}` }, { tid: `${long}${logLine}`, azp: `app${logLine}`, appid: short, ver: `2.0${logLine}`, aud: CLIENT_ID }),
      // A kid of up to 256 characters is looked up.
      key: forged({ alg: 'RS256', kid: `${logLine}${'B'.repeat(150)}`, typ: logLine }, { tid: long, azp: short, ver: '2.0' }),
      structure: forged({ alg: `none${logLine}${short}`, kid: `${short}${logLine}`, typ: { nested: short } }, { tid: long, ver: '1.0', appid: short })
    }
    for (const [step, token] of Object.entries(tokens)) {
      await t.rejects(verifier.verify(token), EntraAuthError)
      const context = seen.verify.at(-1)?.context as VerifyTraceContext
      t.match(context, { verdict: 'invalid', step }, step)
      t.equal(context.tenantId, undefined, `${step}: no tenantId from an unverified token`)
      t.equal(context.clientId, undefined, `${step}: no clientId`)
      t.equal(context.version, undefined, `${step}: no version`)
      const explanation = await verifier.explain(token)
      t.equal(explanation.problem?.step, step)
      for (const [where, published] of [['tracing', { ...context, error: undefined }], ['explain', explanation]] as const) {
        const found = strings(published)
        for (const [path, text] of found) t.notOk(CONTROL.test(text), `${step}, ${where}: ${path} has no control characters`)
        // The package's own words (`detail`, titles) aside, everything read from the token is cut.
        const facts = found.filter(([path]) => /\.facts\.|^\.(kid|tenantId|clientId|version)$/.test(path))
        // A header that breaks the JOSE rules is not decoded at all: nothing to publish.
        t.equal(facts.length > 0, step !== 'structure', `${step}, ${where}: facts from the token`)
        for (const [path, text] of facts) t.ok(text.length <= 128, `${step}, ${where}: ${path} is at most 128 characters (${text.length})`)
      }
      const typ = explanation.steps.find(s => s.step === 'structure')?.facts.typ
      if (step !== 'structure') t.match(typ, /^(JWT)?\\u000a\{"level":50/, `${step}: what was cut is still recognisable, escaped`)
    }
    const verified = seen.verify.filter(s => s.event === 'asyncEnd' && s.context.operation === 'verify')
    t.equal(verified.length, 3)
    const kidSeen = verified.map(s => s.context.kid)
    t.equal(kidSeen[0], kid, 'a kid of the provider is published as it is')
    t.match(kidSeen[1], /^\\u000a\{"level":50.*…$/, 'an unknown kid is cut and escaped')
    t.equal(kidSeen[1]?.length, 128)
    t.equal(kidSeen[2], undefined, 'a header that breaks the JOSE rules publishes no kid')
  })

  t.test('a token whose signature verified is refused later: its identity is published', async t => {
    const seen = listen(t)
    const { fake, verifier } = standalone(t)
    const token = fake.client(CLIENT_ID).generate({ exp: 1 })
    await t.rejects(verifier.verify(token), EntraAuthError)
    t.match(seen.verify.at(-1)?.context, { verdict: 'invalid', step: 'exp', version: '2.0', tenantId: fake.tenantId, clientId: String })
  })

  t.test('concurrent traced validations of one token: one signature check, every context settled, no token in any message', async t => {
    const seen = listen(t)
    const { fake, verifier } = standalone(t)
    const good = fake.client(CLIENT_ID).generate()
    const refused = fake.client(CLIENT_ID).generate({ aud: 'another-api' })
    await Promise.all(Array.from({ length: 10 }, () => verifier.verify(good)))
    await Promise.allSettled(Array.from({ length: 10 }, () => verifier.verify(refused)))
    const ends = seen.verify.filter(s => s.event === 'asyncEnd').map(s => s.context)
    t.equal(ends.length, 20)
    t.equal(ends.flatMap(c => c.steps).filter(s => s.step === 'signature').length, 2, 'one signature check per token')
    t.same(ends.slice(0, 10).map(c => c.verdict), Array(10).fill('valid'))
    for (const context of ends.slice(10)) t.match(context, { verdict: 'invalid', problem: 'auth_token_audience_invalid', step: 'aud', tenantId: fake.tenantId })
    t.ok(ends.slice(10).every(c => c.steps.at(-1)?.step === 'aud' && c.steps.at(-1)?.ok === false), 'each refused context ends with the failed step')
    for (const token of [good, refused]) for (const part of token.split('.')) t.notOk(seen.all().includes(part), 'no message carries any part of the token')
  })

  t.test('a fact is cut between characters: never inside an escape or a surrogate pair', async t => {
    const seen = listen(t)
    const { verifier } = standalone(t)
    await verifier.warm()
    const cases: Array<[string, string, RegExp]> = [
      ['escape across the cut', `${'B'.repeat(125)}\n${'C'.repeat(40)}`, /^B{125}…$/],
      ['surrogate pair across the cut', '😀'.repeat(100), /^(😀){63}…$/],
      ['short enough', `ok\u0000${'D'.repeat(100)}`, /^ok\\u0000D{100}$/]
    ]
    for (const [label, kid, expected] of cases) {
      await t.rejects(verifier.verify(forged({ alg: 'RS256', kid }, { ver: '2.0' })), new EntraAuthError('auth_token_key_error'))
      const published = seen.verify.at(-1)?.context.kid as string
      t.match(published, expected, label)
      t.ok(published.length <= 128 && published.isWellFormed(), label)
    }
  })

  t.test('a token whose payload is not JSON: the published error quotes none of it', async t => {
    const seen = listen(t)
    const { fake, verifier } = standalone(t)
    await verifier.warm()
    const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: fake.keys[0]?.kid })).toString('base64url')
    // V8's JSON.parse error quotes a short input whole, control characters included.
    const payload = Buffer.from('{"tid":\u001b[2J\n{"level":60}').toString('base64url')
    await t.rejects(verifier.verify(`${header}.${payload}.${Buffer.alloc(256, 7).toString('base64url')}`), EntraAuthError)
    const context = seen.verify.at(-1)?.context as VerifyTraceContext
    t.match(context, { verdict: 'invalid', problem: 'auth_token_invalid' })
    const texts: string[] = []
    const walk = (value: unknown, depth = 0): void => {
      if (depth > 5 || value === null || typeof value !== 'object') return
      if (value instanceof Error) texts.push(value.message)
      for (const item of [...Object.values(value), (value as { cause?: unknown }).cause]) walk(item, depth + 1)
    }
    walk(context.error)
    t.ok(texts.length > 0)
    for (const text of texts) t.notOk(CONTROL.test(text) || text.includes('level'), `no part of the payload: ${JSON.stringify(text)}`)
  })
})
