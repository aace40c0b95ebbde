/**
 * The token debugger: `describeToken` / `inspectToken` (src/inspect/) in-process, with the
 * fake Entra serving keys through the `dispatcher` option, and the real vectors of
 * test/fixtures/entra. The built CLI runs as a process in test/e2e/cli.test.ts.
 */
import t, { type Test } from 'tap'
import type { ProblemType } from '../src/index.js'
import { describeToken } from '../src/inspect/describe.js'
import { exitCodeOf, formatReport } from '../src/inspect/format.js'
import { type InspectOptions, type InspectReport, inspectToken, type StepName } from '../src/inspect/validate.js'
import { FAKE_TENANT_ID, FakeEntra, MockClaims, MockJwk, MockJwtClient } from '../src/testing/index.js'
import { readFixture } from './helpers/fixtures.js'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const CLIENT_ID = '6e1c9b1a-0000-4000-8000-00000000a11d'
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
  const impostor = new MockJwtClient({ key: new MockJwk({ kid: published.kid, fresh: true }), claims: user.claims })
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
    'other key, same kid': new MockJwtClient({ key: new MockJwk({ kid: (fake.keys[0] as MockJwk).kid, fresh: true }), claims: user.claims }).generate(),
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
