/**
 * The token debugger runs on the plugin's verifier (`explain`): one fetch of the discovery
 * document and one of the key set per inspection, whatever the token, and its modules reach
 * neither the key store nor the claim rules directly.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { inspectToken, type InspectOptions } from '../src/inspect.js'
import { FakeEntra, MockJwk, MockJwtClient } from '../src/testing/index.js'

const CLIENT_ID = '6e1c9b1a-0000-4000-8000-00000000a11d'

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
  const files = ['inspect.ts', 'cli.ts', ...readdirSync(join(dir, 'inspect')).map(file => `inspect/${file}`)]
  for (const file of files) {
    const imports = [...readFileSync(join(dir, file), 'utf8').matchAll(/from '([^']+)'/g)].map(match => match[1])
    t.notOk(imports.some(path => /(^|\/)(keys|entra\/claims|signature|jwks)\.js$/.test(path ?? '')), `${file}: ${imports.join(', ')}`)
  }
})
