/**
 * What the public API lets user code do, at run time: an `EntraToken` comes only from the verifier
 * (a type and `instanceof`, no constructor to call), and internals stay out of reach.
 */
import t from 'tap'
import * as api from '../src/index.js'
import * as testing from '../src/testing/index.js'
import { createEntraVerifier, EntraToken } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { describeToken } from '../src/inspect/describe.js'

t.test('an EntraToken is made by the verifier only', async t => {
  const entra = new FakeEntra()
  const verifier = createEntraVerifier({ clientId: 'my-api', oidcEndpoint: entra.oidcEndpoint, dispatcher: entra.dispatcher })
  t.teardown(async () => { await verifier.close(); await entra.close() })
  const raw = entra.token('my-api')
  const token = await verifier.verify(raw)
  t.ok(token instanceof EntraToken, 'verify() resolves with an EntraToken')
  const Construct = EntraToken as unknown as new (...args: unknown[]) => EntraToken
  t.throws(() => new Construct(raw, token.header, token.claims), { name: 'TypeError', message: /made only by the verifier/ })
  t.throws(() => new Construct(entra.token('my-api', { aud: 'forged' }), { alg: 'RS256', kid: 'k' }, { ver: '2.0' }), TypeError, 'not even for claims it never saw')

  // The inspector describes an unverified token with its own shape, never an EntraToken.
  const description = describeToken(raw)
  t.notOk(Object.values(description).some(value => value instanceof EntraToken))
  t.same([description.identity.clientId, description.identity.isAppOnly, description.identity.scopes], [token.clientId, false, [...token.scopes]])
})

t.test('internals are not exported', async t => {
  t.notOk('EntraAuthOptionsSchema' in api, 'the options schema is internal: resolveOptions is the validator')
  const entra = new FakeEntra()
  t.teardown(() => entra.close())
  t.notOk('grants' in entra, 'FakeEntra keeps its grant store private')
  t.notOk('GrantStore' in testing)
})
