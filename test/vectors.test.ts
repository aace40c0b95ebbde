/**
 * Real Entra-signed tokens (test/fixtures/entra, see its README) through the plugin, with the
 * JWKS that signed them served by a FakeEntra, and negative cases derived from the same bytes.
 * The tokens expired years ago: every app pins `now` to the vector's "verify at" time.
 */
import { createHmac, createPublicKey } from 'node:crypto'
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { createEntraVerifier, EntraAuthError, type EntraAuthOptions } from '../src/index.js'
import { FakeEntra } from '../src/testing/index.js'
import { assertProblem, bearer, entraApp, readFixture, readJsonFixture, type TokenView } from './helpers/index.js'

const CONSUMER_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad'

interface Jwk { kid: string, kty: string, n?: string, e?: string, issuer?: string, [member: string]: unknown }
interface Jwks { keys: Jwk[] }

function text (file: string): string {
  return readFixture('entra', file)
}

function jwksFile (file: string): Jwks {
  return readJsonFixture<Jwks>('entra', file)
}

/** Vector 05's key: a PKCS#1 "RSA PUBLIC KEY" PEM, converted to the JWK Entra would publish. */
function pemJwk (): Jwk {
  const { n, e } = createPublicKey(text('05-v1-delegated-access-token.passport-azure-ad.key.pem')).export({ format: 'jwk' })
  return { kty: 'RSA', use: 'sig', kid: 'YbRAQRYcE_motWVJKHrwLBbd_9s', n, e }
}

interface Vector {
  token: string
  kid: string
  /** The JWKS that signed it (a fresh copy each call). */
  jwks: () => Jwks
  /** "verify at", in seconds. */
  verifyAt: number
  nbf: number
  exp: number
  tid: string
  ver: '1.0' | '2.0'
  /** Options that make the vector's audience acceptable. */
  audience: Pick<EntraAuthOptions, 'clientId' | 'audiences'>
}

const v01: Vector = {
  token: text('01-v1-id-token.jose4j.jwt'),
  kid: 'MnC_VZcATfM5pOYiJHMba9goEKY',
  jwks: () => jwksFile('01-v1-id-token.jose4j.jwks.json'),
  verifyAt: 1470086999,
  nbf: 1470086997,
  exp: 1470090897,
  tid: '30aa0e58-719c-44f0-b5bb-e131f1f68ab3',
  ver: '1.0',
  audience: { clientId: '56c77428-2d91-48a0-93e6-ca9154965e51' }
}
const v02: Vector = {
  token: text('02-v2-id-token.jose4j.jwt'),
  kid: 'MnC_VZcATfM5pOYiJHMba9goEKY',
  jwks: () => jwksFile('02-v2-id-token.jose4j.jwks.json'),
  verifyAt: 1470148369,
  nbf: 1470148361,
  exp: 1470152261,
  tid: '30aa0e58-719c-44f0-b5bb-e131f1f68ab3',
  ver: '2.0',
  audience: { clientId: '6914484a-38ea-4a0b-801a-bb924cef5235' }
}
const v03: Vector = {
  token: text('03-v1-app-access-token.azure-sdk-for-js.jwt'),
  kid: 'nOo3ZDrODXEK1jKWhXslHR_KXEg',
  jwks: () => jwksFile('jwks-common-v2-2022-11-12.dockyard.json'),
  verifyAt: 1613523036,
  nbf: 1613522976,
  exp: 1613609676,
  tid: '72f988bf-86f1-41af-91ab-2d7cd011db47',
  ver: '1.0',
  audience: { clientId: '00000000-0000-4000-8000-0000000000aa', audiences: ['https://communication.azure.com/'] }
}
const v04: Vector = {
  token: text('04-v2-delegated-access-token.navikt.jwt'),
  kid: 'L1KfKFI_jnXbwWc22xZxw1sUHH0',
  jwks: () => jwksFile('jwks-common-v2-2024-06-18.panva-wellknown.json'),
  verifyAt: 1718609997,
  nbf: 1718609937,
  exp: 1718614377,
  tid: '966ac572-f5b7-4bbe-aa88-c76419c0f851',
  ver: '2.0',
  audience: { clientId: 'bff62dcb-88dc-4a13-9e26-1cbffb96ec64' }
}
const v05: Vector = {
  token: text('05-v1-delegated-access-token.passport-azure-ad.jwt'),
  kid: 'YbRAQRYcE_motWVJKHrwLBbd_9s',
  // The PEM's key, plus one more real key (from vector 01's set) so there is another kid to swap in.
  jwks: () => ({ keys: [pemJwk(), jwksFile('01-v1-id-token.jose4j.jwks.json').keys.find(k => k.kid === 'MnC_VZcATfM5pOYiJHMba9goEKY') as Jwk] }),
  verifyAt: 1467311308,
  nbf: 1467311248,
  exp: 1467315148,
  tid: '268da1a1-9db4-48b9-b1fe-683250ba90cc',
  ver: '1.0',
  audience: { clientId: '6514a8ca-d9e4-4155-b292-65258398f3aa', audiences: ['spn:6514a8ca-d9e4-4155-b292-65258398f3aa'] }
}

type Tenancy = 'single' | 'multi'

interface VectorAppOptions {
  tenancy?: Tenancy
  jwks?: Jwks
  /** Plugin options replacing the vector's defaults. */
  options?: Partial<EntraAuthOptions>
}

/** A clock tests can move; starts at the vector's "verify at". */
interface Clock { ms: number }

/**
 * The plugin configured for `vector`: discovery issuer for the vector's tenant (single) or the
 * `{tenantid}` template (multi), the vector's JWKS, its audience, and the clock pinned.
 */
async function vectorApp (t: Test, vector: Vector, { tenancy = 'single', jwks = vector.jwks(), options = {} }: VectorAppOptions = {}) {
  const entra = new FakeEntra(tenancy === 'multi' ? { tenant: 'organizations' } : { tenant: vector.tid })
  entra.jwksDocument = jwks
  const clock: Clock = { ms: vector.verifyAt * 1000 }
  const app = await entraApp({ ...vector.audience, now: () => clock.ms, ...entra.pluginOptions(), ...options } as EntraAuthOptions)
  t.teardown(async () => {
    await app.close()
    await entra.close()
  })
  const call = (token: string = vector.token): Promise<LightMyRequestResponse> => app.inject({ url: '/me', headers: bearer(token) })
  return { app, entra, clock, call }
}

const segments = (token: string): [string, string, string] => token.split('.') as [string, string, string]
const decode = (segment: string): Record<string, unknown> => JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** The token with its JOSE header changed; payload and signature bytes kept. */
function withHeader (token: string, patch: Record<string, unknown>): string {
  const [header, payload, signature] = segments(token)
  return `${encode({ ...decode(header), ...patch })}.${payload}.${signature}`
}

/** The token with one bit of its signature flipped. */
function flipSignatureBit (token: string): string {
  const [header, payload, signature] = segments(token)
  const bytes = Buffer.from(signature, 'base64url')
  bytes[100] = (bytes[100] as number) ^ 0x01
  return `${header}.${payload}.${bytes.toString('base64url')}`
}

/** A key of `vector`'s JWKS republished with another `issuer` member. */
function jwksWithKeyIssuer (vector: Vector, issuer: string): Jwks {
  const jwks = vector.jwks()
  const key = jwks.keys.find(k => k.kid === vector.kid) as Jwk
  key.issuer = issuer
  return jwks
}

t.test('the vectors decode as their README describes', async t => {
  t.equal(decode(segments(v04.token)[0]).kid, v04.kid)
  t.equal(decode(segments(v05.token)[0]).kid, v05.kid)
  // The PEM of vector 05 and the JWK of the same kid in vector 01's set are one key.
  const inV01 = jwksFile('01-v1-id-token.jose4j.jwks.json').keys.find(k => k.kid === v05.kid) as Jwk
  const fromPem = pemJwk()
  t.same({ n: fromPem.n, e: fromPem.e }, { n: inV01.n, e: inV01.e })
  for (const v of [v01, v02, v03, v04, v05]) {
    const claims = decode(segments(v.token)[1])
    t.equal(claims.ver, v.ver)
    t.equal(claims.tid, v.tid)
    t.ok(v.nbf < v.verifyAt && v.verifyAt < v.exp, 'verify at lies between nbf and exp')
  }
})

t.test('vector 04: v2.0 delegated access token', async t => {
  for (const tenancy of ['single', 'multi'] as const) {
    t.test(`accepted, ${tenancy}-tenant`, async t => {
      const { call } = await vectorApp(t, v04, { tenancy })
      const res = await call()
      t.equal(res.statusCode, 200)
      t.same(res.json() as TokenView, {
        version: '2.0',
        isAppOnly: false,
        tenantId: v04.tid,
        objectId: '799a132a-93c8-427e-92f7-08cb220c879a',
        clientId: '5f28c10f-ecd5-45ef-96b8-db4311802e89',
        scopes: ['defaultaccess'],
        sub: 'QDOyOS0HF4cRVQN7Gb_vIW-CWu2vIPJ_nb_ypFRBm_o'
      })
    })
  }

  t.test('its scope and client are enforced', async t => {
    const { app } = await vectorApp(t, v04, { options: { allowedApps: ['5f28c10f-ecd5-45ef-96b8-db4311802e89'] } })
    app.get('/default', { onRequest: app.entraAuth(['defaultaccess']) }, async () => 'ok')
    app.get('/write', { onRequest: app.entraAuth({ scopes: ['Files.Write'], roles: ['defaultaccess'] }) }, async () => 'ok')
    t.equal((await app.inject({ url: '/default', headers: bearer(v04.token) })).statusCode, 200)
    // `defaultaccess` is a delegated scope: it does not count as an app role.
    assertProblem(t, await app.inject({ url: '/write', headers: bearer(v04.token) }), 'auth_token_insufficient_scopes', { status: 403 })
  })

  t.test('introspection reports it active', async t => {
    const { app } = await vectorApp(t, v04)
    t.same(await app.entraAuth.introspect(v04.token), {
      active: true,
      scope: 'defaultaccess',
      client_id: '5f28c10f-ecd5-45ef-96b8-db4311802e89',
      username: 'F_Z993298.E_Z993298@trygdeetaten.no',
      token_type: 'Bearer',
      exp: v04.exp,
      iat: 1718609937,
      nbf: v04.nbf,
      sub: 'QDOyOS0HF4cRVQN7Gb_vIW-CWu2vIPJ_nb_ypFRBm_o',
      aud: v04.audience.clientId,
      iss: `https://login.microsoftonline.com/${v04.tid}/v2.0`
    })
  })

  t.test('refused for another tenant of a single-tenant API', async t => {
    const entra = new FakeEntra({ tenant: '72f988bf-86f1-41af-91ab-2d7cd011db47' })
    entra.jwksDocument = v04.jwks()
    const app = await entraApp({ ...v04.audience, now: () => v04.verifyAt * 1000, ...entra.pluginOptions() })
    t.teardown(async () => { await app.close(); await entra.close() })
    assertProblem(t, await app.inject({ url: '/me', headers: bearer(v04.token) }), 'auth_token_issuer_untrusted')
  })
})

t.test('vector 05: v1.0 delegated access token (spn: audience, key from a PKCS#1 PEM)', async t => {
  for (const tenancy of ['single', 'multi'] as const) {
    t.test(`accepted, ${tenancy}-tenant`, async t => {
      const { call } = await vectorApp(t, v05, { tenancy })
      const res = await call()
      t.equal(res.statusCode, 200)
      t.same(res.json() as TokenView, {
        version: '1.0',
        isAppOnly: false,
        tenantId: v05.tid,
        objectId: '7912fe7b-b5ab-425b-bb1f-0e83b99fca7f',
        clientId: 'bebfad57-efd7-419b-b74b-4b9dab7bd470',
        scopes: ['user_impersonation'],
        sub: 'Ku2-Ft9lY9i2Bvfhmq4166ZH3kWH4WXtmzG9M-8MFac'
      })
    })
  }

  t.test('the spn: audience must be configured', async t => {
    const { call } = await vectorApp(t, v05, { options: { audiences: [] } })
    assertProblem(t, await call(), 'auth_token_audience_invalid')
  })

  t.test('standalone verifier', async t => {
    const entra = new FakeEntra({ tenant: v05.tid })
    entra.jwksDocument = v05.jwks()
    // `tenant` derives the same discovery URL the fake serves.
    const verifier = createEntraVerifier({ ...v05.audience, tenant: v05.tid, now: () => v05.verifyAt * 1000, dispatcher: entra.dispatcher })
    t.teardown(async () => { await verifier.close(); await entra.close() })
    const token = await verifier.verify(v05.token)
    t.equal(token.version, '1.0')
    t.equal(token.clientId, 'bebfad57-efd7-419b-b74b-4b9dab7bd470')
    t.equal((await verifier.introspect(v05.token)).active, true)
    const err = await verifier.verify(flipSignatureBit(v05.token)).catch((e: unknown) => e)
    t.equal((err as EntraAuthError).type, 'auth_token_signature_untrusted')
    t.same(await verifier.introspect(flipSignatureBit(v05.token)), { active: false })
  })
})

t.test('vector 03: v1.0 app-only access token (v1 token, v2 key issuer template)', async t => {
  for (const tenancy of ['single', 'multi'] as const) {
    t.test(`accepted and recognised as app-only, ${tenancy}-tenant`, async t => {
      // It carries no permission, which a multi-tenant API refuses by default (requirePermissions).
      const { call } = await vectorApp(t, v03, { tenancy, options: tenancy === 'multi' ? { requirePermissions: false } : {} })
      const res = await call()
      t.equal(res.statusCode, 200)
      t.same(res.json() as TokenView, {
        version: '1.0',
        isAppOnly: true,
        tenantId: v03.tid,
        objectId: '3e0c714f-97ac-4d63-aeaf-14baa5e064cb',
        clientId: '6c8181c7-91a6-4e2e-8480-d54021ac4c4b',
        scopes: [],
        sub: '3e0c714f-97ac-4d63-aeaf-14baa5e064cb'
      })
    })
  }

  t.test('without the resource URI configured it is for another resource', async t => {
    const { call } = await vectorApp(t, v03, { options: { audiences: [] } })
    assertProblem(t, await call(), 'auth_token_audience_invalid')
  })

  t.test('it carries no scopes, so any scope requirement refuses it', async t => {
    const { app } = await vectorApp(t, v03)
    app.get('/scoped', { onRequest: app.entraAuth({ roles: ['Anything'] }) }, async () => 'ok')
    assertProblem(t, await app.inject({ url: '/scoped', headers: bearer(v03.token) }), 'auth_token_insufficient_scopes', { status: 403 })
  })
})

t.test('vectors 01 and 02: ID tokens are refused, even with aud = clientId', async t => {
  for (const [name, vector] of [['01 (v1.0)', v01], ['02 (v2.0)', v02]] as const) {
    for (const tenancy of ['single', 'multi'] as const) {
      t.test(`${name}, ${tenancy}-tenant`, async t => {
        const { call } = await vectorApp(t, vector, { tenancy })
        const { detail } = assertProblem(t, await call(), 'auth_token_claim_missing')
        t.match(detail, /ID token/)
      })
    }
  }

  t.test('their signatures do verify: the refusal is about the token kind', async t => {
    // One flipped bit turns the answer into a signature failure, so the claim check above ran
    // only after the real signature verified.
    const { call } = await vectorApp(t, v02)
    assertProblem(t, await call(flipSignatureBit(v02.token)), 'auth_token_signature_untrusted')
  })
})

t.test('negative cases from the real bytes', async t => {
  const accepted = [v03, v04, v05]

  t.test('a flipped signature bit', async t => {
    for (const vector of accepted) {
      const { call } = await vectorApp(t, vector)
      t.equal((await call()).statusCode, 200, 'the untouched token passes')
      assertProblem(t, await call(flipSignatureBit(vector.token)), 'auth_token_signature_untrusted')
    }
  })

  t.test('alg changed to HS256 or none', async t => {
    for (const vector of accepted) {
      const { call } = await vectorApp(t, vector)
      for (const alg of ['HS256', 'none', 'None', 'RS512', 'PS256']) {
        assertProblem(t, await call(withHeader(vector.token, { alg })), 'auth_token_invalid')
      }
      // HS256 keyed with the published public key (the classic key-confusion forgery).
      const [, payload] = segments(vector.token)
      const header = encode({ ...decode(segments(vector.token)[0]), alg: 'HS256' })
      const pem = createPublicKey({ key: vector.jwks().keys.find(k => k.kid === vector.kid) as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' })
      const mac = createHmac('sha256', pem).update(`${header}.${payload}`).digest('base64url')
      assertProblem(t, await call(`${header}.${payload}.${mac}`), 'auth_token_invalid')
      // alg none with the signature dropped.
      assertProblem(t, await call(`${encode({ ...decode(segments(vector.token)[0]), alg: 'none' })}.${payload}.`), 'auth_token_invalid')
    }
  })

  t.test('kid swapped for another real kid of the same JWKS', async t => {
    for (const vector of accepted) {
      const { call } = await vectorApp(t, vector)
      const others = vector.jwks().keys.map(k => k.kid).filter(kid => kid !== vector.kid)
      t.ok(others.length > 0)
      for (const kid of others) {
        assertProblem(t, await call(withHeader(vector.token, { kid, x5t: kid })), 'auth_token_signature_untrusted')
      }
    }
  })

  t.test('the key removed from the JWKS (rotation)', async t => {
    for (const vector of accepted) {
      const jwks = vector.jwks()
      jwks.keys = jwks.keys.filter(k => k.kid !== vector.kid)
      const { call } = await vectorApp(t, vector, { jwks })
      assertProblem(t, await call(), 'auth_token_key_error')
    }
  })

  t.test('the key removed while the app runs: refused once the key set is refreshed', async t => {
    const { call, entra } = await vectorApp(t, v04, { options: { jwks: { cooldown: 0 } } })
    t.equal((await call()).statusCode, 200)
    const jwks = v04.jwks()
    jwks.keys = jwks.keys.filter(k => k.kid !== v04.kid)
    entra.jwksDocument = jwks
    t.equal((await call()).statusCode, 200, 'still fresh: the cached key set serves')
    // An unknown kid makes the plugin refresh the key set at once (cooldown 0).
    assertProblem(t, await call(withHeader(v04.token, { kid: 'rotated-in-later' })), 'auth_token_key_error')
    // The replaced set no longer has the key: the (cached) token is judged afresh and refused.
    assertProblem(t, await call(), 'auth_token_key_error')
  })

  t.test('a wrong audience configuration', async t => {
    for (const vector of accepted) {
      const { call } = await vectorApp(t, vector, { options: { clientId: '11111111-2222-4333-8444-555555555555', audiences: ['api://someone-else'] } })
      assertProblem(t, await call(), 'auth_token_audience_invalid')
    }
  })

  t.test('the clock past exp', async t => {
    for (const vector of accepted) {
      const { call, clock } = await vectorApp(t, vector)
      clock.ms = vector.exp * 1000 - 1
      t.equal((await call()).statusCode, 200, 'one millisecond before exp')
      // Now cached; the cached token must expire too (RFC 7519: not on or after exp).
      clock.ms = vector.exp * 1000
      assertProblem(t, await call(), 'auth_token_expired')
    }
  })

  t.test('the clock past exp on a cold app, and the tolerance', async t => {
    const past = await vectorApp(t, v04)
    past.clock.ms = v04.exp * 1000 + 1000
    assertProblem(t, await past.call(), 'auth_token_expired')

    const skewed = await vectorApp(t, v04, { options: { clockTolerance: 300_000, tokenCache: { max: 0 } } })
    skewed.clock.ms = v04.exp * 1000 + 299_999
    t.equal((await skewed.call()).statusCode, 200, 'within the 5 min tolerance')
    skewed.clock.ms = v04.exp * 1000 + 300_000
    assertProblem(t, await skewed.call(), 'auth_token_expired')
  })

  t.test('the clock before nbf', async t => {
    const { call, clock } = await vectorApp(t, v05)
    clock.ms = v05.nbf * 1000 - 1
    assertProblem(t, await call(), 'auth_token_immature')
  })

  t.test('v1.0 vectors against tokenVersions 2.0, and the reverse', async t => {
    for (const vector of [v03, v05]) {
      const { call } = await vectorApp(t, vector, { options: { tokenVersions: ['2.0'] } })
      assertProblem(t, await call(), 'auth_token_ver_not_supported')
    }
    const { call } = await vectorApp(t, v04, { options: { tokenVersions: ['1.0'] } })
    assertProblem(t, await call(), 'auth_token_ver_not_supported')
    const both = await vectorApp(t, v05, { options: { tokenVersions: ['1.0'] } })
    t.equal((await both.call()).statusCode, 200, 'a v1.0 token passes a v1.0-only API')
  })
})

t.test('signing-key issuer: a key bound to one tenant never verifies another tenant\'s token', async t => {
  const consumerIssuer = `https://login.microsoftonline.com/${CONSUMER_TENANT}/v2.0`

  t.test('the published MSA keys carry the consumer tenant as issuer', async t => {
    const msa = v04.jwks().keys.filter(k => k.issuer === consumerIssuer)
    t.equal(msa.length, 2)
  })

  for (const tenancy of ['single', 'multi'] as const) {
    t.test(`vector 04's key republished as an MSA key, ${tenancy}-tenant`, async t => {
      const { call } = await vectorApp(t, v04, { tenancy, jwks: jwksWithKeyIssuer(v04, consumerIssuer) })
      const { detail } = assertProblem(t, await call(), 'auth_token_issuer_untrusted')
      t.match(detail, /signing key/)
    })
  }

  t.test('v1.0 tokens are held to the rule in its v2.0 form (vector 03, MSA key)', async t => {
    const { call } = await vectorApp(t, v03, { tenancy: 'multi', jwks: jwksWithKeyIssuer(v03, consumerIssuer) })
    assertProblem(t, await call(), 'auth_token_issuer_untrusted')
  })

  t.test('a key bound to another concrete tenant', async t => {
    const { call } = await vectorApp(t, v04, { tenancy: 'multi', jwks: jwksWithKeyIssuer(v04, `https://login.microsoftonline.com/${v03.tid}/v2.0`) })
    assertProblem(t, await call(), 'auth_token_issuer_untrusted')
  })

  t.test('a key bound to the token\'s own tenant verifies it', async t => {
    const { call } = await vectorApp(t, v04, { tenancy: 'multi', jwks: jwksWithKeyIssuer(v04, `https://login.microsoftonline.com/${v04.tid}/v2.0`) })
    t.equal((await call()).statusCode, 200)
  })

  t.test('a key of another cloud', async t => {
    const { call } = await vectorApp(t, v04, { tenancy: 'multi', jwks: jwksWithKeyIssuer(v04, 'https://login.microsoftonline.us/{tenantid}/v2.0') })
    assertProblem(t, await call(), 'auth_token_issuer_untrusted')
  })
})

t.test('EntraAuthError from verify carries the problem', async t => {
  const { app } = await vectorApp(t, v04)
  const err = await app.entraAuth.verify(flipSignatureBit(v04.token)).catch((e: unknown) => e)
  t.ok(err instanceof EntraAuthError)
  t.equal((err as EntraAuthError).status, 401)
  t.notMatch((err as EntraAuthError).detail, segments(v04.token)[2], 'the detail never echoes the token')
})
