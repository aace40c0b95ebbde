/**
 * Tokens as JWS: real Entra-signed tokens verify and their spoilt variants don't, hostile tokens
 * and headers are refused without a 5xx or a fetch, and the verified token is hardened. One
 * section per subject below, each with its own fixtures.
 */
import { createHmac, createPublicKey, constants, generateKeyPairSync, type KeyObject, sign } from 'node:crypto'
import { inspect } from 'node:util'
import Fastify, { type LightMyRequestResponse, type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { getGlobalDispatcher, MockAgent, setGlobalDispatcher } from 'undici'
import entraAuth, { createEntraVerifier, EntraAuthError, type EntraAuthOptions, problems, type EntraToken } from '../src/index.js'
import { FakeEntra, MockClaims, MockJwk, MockJwtClient, MOCK_ISSUER, type FakeEntraOptions } from '../src/testing/index.js'
import { assertProblem, bearer, entraApp, readFixture, readJsonFixture, testKey, type TokenView, CLIENT_ID, SCOPE_ROUTES } from './helpers/index.js'

const API_ID = 'a0b1c2d3-0000-4000-8000-00000000a11e'
const OTHER_TENANT = '0b5e55ed-0000-4000-8000-00000000beef'

/**
 * Real Entra-signed tokens (test/fixtures/entra, see its README) through the plugin, with the
 * JWKS that signed them served by a FakeEntra, and negative cases derived from the same bytes.
 * The tokens expired years ago: every app pins `now` to the vector's "verify at" time.
 */
t.test('real Entra tokens', async t => {
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
})

/**
 * threats.md, sections "Tokens" and "The Authorization header": hostile inputs through
 * `app.inject`. Every reply must be a problem (never a 5xx) that does not echo the token, and no
 * token may make the plugin fetch anything.
 */
t.test('threats', async t => {
  /** Client ID of the Entra-shaped fixtures (a GUID, as real ones are). */
  const CLIENT_APP = 'c0ffee00-0000-4000-8000-000000000002'

  // ---------------------------------------------------------------------------------------------
  // Nothing may ever leave for the network: any fetch outside the fake Entra lands here.
  const outside = new MockAgent()
  outside.disableNetConnect()
  const evilHits: string[] = []
  outside.get('https://evil.example.com').intercept({ path: () => true, method: () => true }).reply(opts => {
    evilHits.push(opts.path)
    return { statusCode: 200, data: '{"keys":[]}' }
  }).persist()
  const previousDispatcher = getGlobalDispatcher()
  setGlobalDispatcher(outside)
  t.teardown(async () => {
    setGlobalDispatcher(previousDispatcher)
    await outside.close()
  })

  // ---------------------------------------------------------------------------------------------
  // Fixtures

  interface Fixture {
    app: FastifyInstance
    entra: FakeEntra
    client: MockJwtClient
    /** Every status the app answered with. */
    statuses: number[]
    /** `request.entraToken` as seen when each response was sent, by URL. */
    seenTokens: Array<{ status: number, token: unknown }>
    /** Fetches made by the plugin at ready time. */
    baseline: { discovery: number, jwks: number }
  }

  /** Every log line written by any fixture, checked at the end for leaked tokens. */
  const logs: string[] = []
  /** Every credential sent by a probe. */
  const secrets = new Set<string>()

  /**
   * Fake Entras by their options, shared by the fixtures (each one generates an RSA key, which is
   * slow). Subtests run one after another and leave the fakes in their default state.
   */
  const fakes = new Map<string, FakeEntra>()
  t.teardown(async () => { for (const fake of fakes.values()) await fake.close() })

  function fakeEntra (entraOptions: FakeEntraOptions): FakeEntra {
    const name = JSON.stringify(entraOptions)
    let fake = fakes.get(name)
    if (fake === undefined) {
      fake = new FakeEntra(entraOptions)
      fakes.set(name, fake)
    }
    return fake
  }

  async function build (t: Test, options: Partial<EntraAuthOptions>, entraOptions: FakeEntraOptions, clientId: string, seedClaims: boolean): Promise<Fixture> {
    const entra = fakeEntra(entraOptions)
    const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { logs.push(line) } } } })
    // The production key timings, not the test kit's (cooldown 0): an unknown kid must cost no fetch.
    const { jwks: _testTimings, ...provider } = entra.pluginOptions()
    await app.register(entraAuth, { clientId, ...provider, ...options } as EntraAuthOptions)
    const statuses: number[] = []
    const seenTokens: Fixture['seenTokens'] = []
    app.addHook('onResponse', async (request, reply) => {
      statuses.push(reply.statusCode)
      seenTokens.push({ status: reply.statusCode, token: request.entraToken })
    })
    app.get('/restricted', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    app.post('/restricted', { onRequest: app.entraAuth() }, async () => ({ ok: true }))
    SCOPE_ROUTES.forEach((requirement, i) => {
      app.get(`/scopes/${i}`, { preHandler: app.entraAuth(requirement) }, async () => ({ ok: true }))
    })
    const client = seedClaims
      ? new MockJwtClient({ key: entra.keys[0]!, claims: new MockClaims({ selfAppId: clientId }) })
      : entra.client(clientId, 'v2')
    await app.ready()
    t.teardown(() => app.close())
    return { app, entra, client, statuses, seenTokens, baseline: { ...entra.requests } }
  }

  /** The seed's fixture (helpers.ts `seedApp`), with a log stream and response recording. */
  function seedFixture (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<Fixture> {
    return build(t, { allowedSubjects: ['test_subject'], allowedApps: ['test_app_2'], ...options }, { issuer: MOCK_ISSUER, keyIssuer: null }, CLIENT_ID, true)
  }

  /** An Entra-shaped fixture: default fake (v2.0 issuer of the fake tenant, keys with `issuer`). */
  function entraFixture (t: Test, options: Partial<EntraAuthOptions> = {}, entraOptions: FakeEntraOptions = {}): Promise<Fixture> {
    return build(t, options, entraOptions, API_ID, false)
  }

  // ---------------------------------------------------------------------------------------------
  // Token crafting

  const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64url')
  const seg = (value: unknown): string => b64(JSON.stringify(value))

  /** `segment` with 'A's appended to a length of 1 mod 4, which no byte string encodes to. */
  function oneMod4 (segment: string): string {
    const missing = (((1 - segment.length) % 4) + 4) % 4
    return segment + 'A'.repeat(missing === 0 ? 4 : missing)
  }

  /** RS256 over the exact header and payload texts given (for JSON no serializer would write). */
  function signText (key: KeyObject, headerText: string, payloadText: string): string {
    const input = `${b64(headerText)}.${b64(payloadText)}`
    return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`
  }

  /** The claims `client` would put into a token, with `changes` (a value of `undefined` removes). */
  function claimsOf (client: MockJwtClient, changes: Record<string, unknown> = {}): Record<string, unknown> {
    const claims: Record<string, unknown> = { ...client.claims.build(), ...changes }
    for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name]
    return claims
  }

  /** A token whose `name` claim is the raw JSON text `text`, signed with the client's key. */
  function withRawClaim (client: MockJwtClient, name: string, text: string): string {
    const marker = '"__RAW_CLAIM__"'
    const payloadText = JSON.stringify(claimsOf(client, { [name]: '__RAW_CLAIM__' })).replace(marker, text)
    return signText(client.key.privateKey, JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: client.key.kid }), payloadText)
  }

  // ---------------------------------------------------------------------------------------------
  // Probing

  interface Expected {
    status: number
    /** One problem type, or any of several. */
    type?: string | string[]
    url?: string
    method?: 'GET' | 'POST'
  }

  function tokenOf (authorization: string): string {
    const space = authorization.indexOf(' ')
    return space === -1 ? authorization : authorization.slice(space + 1)
  }

  /** Asserts the reply: status, problem shape, challenge, never a 5xx, never the token echoed. */
  function checkReply (t: Test, res: LightMyRequestResponse, expected: Expected, secret: string | undefined, label: string): void {
    t.ok(res.statusCode < 500, `${label}: not a 5xx (${res.statusCode})`)
    t.equal(res.statusCode, expected.status, `${label}: status ${expected.status}`)
    if (secret !== undefined && secret.length >= 8) {
      t.notOk(res.body.includes(secret), `${label}: body does not contain the token`)
      for (const part of new Set(secret.split('.'))) {
        if (part.length >= 24) t.notOk(res.body.includes(part), `${label}: body does not contain a token segment`)
      }
      for (const value of Object.values(res.headers)) {
        t.notOk(String(value).includes(secret), `${label}: headers do not contain the token`)
      }
    }
    if (expected.status === 401 || expected.status === 403) {
      t.match(res.headers['content-type'], /^application\/problem\+json/, `${label}: problem+json`)
      t.match(res.headers['www-authenticate'], /^Bearer\b/, `${label}: Bearer challenge`)
      const body = res.json() as { type: string, status: number, detail: string }
      t.equal(body.status, expected.status, `${label}: body status`)
      if (expected.type !== undefined) {
        const types = Array.isArray(expected.type) ? expected.type : [expected.type]
        t.ok(types.includes(body.type), `${label}: type ${body.type} is one of ${types.join(', ')}`)
      }
      // RFC 6750 §3.1: another scheme's credentials get a challenge without error code (exact cases: plugin.test.ts, "Authorization header").
      if (body.type === 'auth_header_invalid') t.match(res.headers['www-authenticate'], /^Bearer(?: error="invalid_request"|$)/)
      else if (expected.status === 401 && body.type !== 'auth_header_missing') t.match(res.headers['www-authenticate'], /error="invalid_token"/)
      if (expected.status === 403) t.match(res.headers['www-authenticate'], /error="insufficient_scope"/)
    }
  }

  /** Sends `authorization` (undefined: no header) and checks the reply. */
  async function probe (t: Test, fx: Fixture, authorization: string | undefined, expected: Expected, label = String(authorization).slice(0, 60)): Promise<LightMyRequestResponse> {
    const secret = authorization === undefined ? undefined : tokenOf(authorization)
    if (secret !== undefined && secret.length >= 8) secrets.add(secret)
    const res = await fx.app.inject({
      method: expected.method ?? 'GET',
      url: expected.url ?? '/restricted',
      headers: authorization === undefined ? {} : { authorization }
    })
    checkReply(t, res, expected, secret, label)
    return res
  }

  /**
   * Like {@link probe}, for header values Node's HTTP layer may itself refuse: if light-my-request
   * throws, it must be its own header validation; otherwise the plugin's reply must be a 401.
   */
  async function probeRaw (t: Test, fx: Fixture, authorization: string, type: string | string[], label: string): Promise<void> {
    secrets.add(tokenOf(authorization))
    let res: LightMyRequestResponse
    try {
      res = await fx.app.inject({ method: 'GET', url: '/restricted', headers: { authorization } })
    } catch (err) {
      t.match((err as { code?: string }).code, /^ERR_(INVALID_CHAR|HTTP_INVALID_HEADER_VALUE|INVALID_HTTP_TOKEN)$/, `${label}: refused by the HTTP layer`)
      return
    }
    checkReply(t, res, { status: 401, type }, tokenOf(authorization), label)
  }

  /** No fetch happened after start-up, neither to the fake Entra nor anywhere else. */
  function noFetch (t: Test, fx: Fixture): void {
    t.same(fx.statuses.filter(status => status >= 500), [], 'no reply was a 5xx')
    t.same(fx.entra.requests, fx.baseline, 'no discovery or JWKS fetch after start-up')
    t.same(evilHits, [], 'nothing fetched from where a token pointed')
  }

  // ---------------------------------------------------------------------------------------------
  // Tokens: algorithm

  t.test('algorithm: only RS256', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    const kid = client.key.kid
    const payload = seg(claimsOf(client))
    await probe(t, fx, `Bearer ${client.generate()}`, { status: 200 }, 'control: a good RS256 token')

    const rsa = client.key.privateKey
    const pem = client.key.publicKey.export({ type: 'spki', format: 'pem' }) as string
    const der = client.key.publicKey.export({ type: 'spki', format: 'der' })
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    const signers: Record<string, (input: string) => string> = {
      HS256: input => createHmac('sha256', pem).update(input).digest('base64url'),
      HS256der: input => createHmac('sha256', der).update(input).digest('base64url'),
      HS384: input => createHmac('sha384', pem).update(input).digest('base64url'),
      HS512: input => createHmac('sha512', pem).update(input).digest('base64url'),
      RS512: input => sign('sha512', Buffer.from(input), rsa).toString('base64url'),
      RS384: input => sign('sha384', Buffer.from(input), rsa).toString('base64url'),
      PS256: input => sign('sha256', Buffer.from(input), { key: rsa, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('base64url'),
      ES256: input => sign('sha256', Buffer.from(input), { key: ec, dsaEncoding: 'ieee-p1363' }).toString('base64url'),
      RS256: input => sign('sha256', Buffer.from(input), rsa).toString('base64url')
    }
    const cases: Array<[string, unknown, string]> = [
      ['HS256 keyed with the public key PEM', 'HS256', 'HS256'],
      ['HS256 keyed with the public key DER', 'HS256', 'HS256der'],
      ['HS384 keyed with the public key', 'HS384', 'HS384'],
      ['HS512 keyed with the public key', 'HS512', 'HS512'],
      ['RS512', 'RS512', 'RS512'],
      ['RS384', 'RS384', 'RS384'],
      ['PS256', 'PS256', 'PS256'],
      ['ES256', 'ES256', 'ES256'],
      ['alg rs256 (case)', 'rs256', 'RS256'],
      ['alg "RS256 " (padded)', 'RS256 ', 'RS256'],
      ['alg as array', ['RS256'], 'RS256'],
      ['alg null', null, 'RS256'],
      ['alg number', 256, 'RS256'],
      ['alg object', { name: 'RS256' }, 'RS256']
    ]
    for (const [label, alg, signer] of cases) {
      const input = `${seg({ alg, typ: 'JWT', kid })}.${payload}`
      await probe(t, fx, `Bearer ${input}.${signers[signer]!(input)}`, { status: 401, type: 'auth_token_invalid' }, label)
    }

    for (const none of ['none', 'None', 'NONE', 'nOnE', 'none ']) {
      const input = `${seg({ alg: none, typ: 'JWT', kid })}.${payload}`
      await probe(t, fx, `Bearer ${input}.`, { status: 401, type: 'auth_token_invalid' }, `alg ${none}, empty signature`)
      await probe(t, fx, `Bearer ${input}.${signers.RS256!(input)}`, { status: 401, type: 'auth_token_invalid' }, `alg ${none}, with a signature`)
    }

    const noAlg = `${seg({ typ: 'JWT', kid })}.${payload}`
    await probe(t, fx, `Bearer ${noAlg}.${signers.RS256!(noAlg)}`, { status: 401, type: 'auth_token_invalid' }, 'missing alg')

    const good = client.generate()
    const [h, p] = good.split('.') as [string, string, string]
    await probe(t, fx, `Bearer ${h}.${p}.`, { status: 401, type: 'auth_token_invalid' }, 'RS256, empty signature')
    await probe(t, fx, `Bearer ${h}.${p}`, { status: 401, type: 'auth_token_invalid' }, 'RS256, signature segment dropped')

    // Signature-level failures: right alg and kid, wrong bytes.
    // The kit's own foreign signer (`fresh`: a key pair made here), the one test that exercises it.
    const other = new MockJwtClient({ key: new MockJwk({ kid, fresh: true }), claims: client.claims }).generate()
    await probe(t, fx, `Bearer ${other}`, { status: 401, type: 'auth_token_signature_untrusted' }, 'signed by another key with our kid')
    const forged = `${h}.${seg({ ...claimsOf(client), scp: 'SCOPE_A SCOPE_B', sub: 'test_subject', aud: 'test_app_1', exp: 4070908800 })}.${good.split('.')[2]!}`
    await probe(t, fx, `Bearer ${forged}`, { status: 401, type: 'auth_token_signature_untrusted' }, 'payload changed after signing')
    await probe(t, fx, `Bearer ${h}.${p}.${'A'.repeat(342)}`, { status: 401, type: 'auth_token_signature_untrusted' }, 'signature of zeros')
    await probe(t, fx, `Bearer ${h}.${p}.AAAA`, { status: 401, type: ['auth_token_signature_untrusted', 'auth_token_invalid'] }, 'signature too short')

    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: header keys

  t.test('header keys jwk, jku, x5u, x5c are never trusted', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    const attacker = new MockJwk({ privateKey: testKey('foreign') })
    const attackerWithOurKid = new MockJwk({ kid: client.key.kid, privateKey: attacker.privateKey })
    const attackerJwk = attacker.toJSON()
    const x5c = [attacker.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')]
    const pointers: Array<[string, Record<string, unknown>]> = [
      ['jwk', { jwk: attackerJwk }],
      ['jku', { jku: 'https://evil.example.com/jwks.json' }],
      ['x5u', { x5u: 'https://evil.example.com/cert.pem' }],
      ['x5c', { x5c }],
      ['all of them', { jwk: attackerJwk, jku: 'https://evil.example.com/jwks.json', x5u: 'https://evil.example.com/cert.pem', x5c }]
    ]
    const claims = claimsOf(client)
    for (const [label, extra] of pointers) {
      // Signed by the attacker's key, which the header names or embeds.
      const ownKid = new MockJwtClient({ key: attacker, claims: client.claims }).sign({ alg: 'RS256', typ: 'JWT', kid: attacker.kid, ...extra }, claims)
      await probe(t, fx, `Bearer ${ownKid}`, { status: 401, type: 'auth_token_key_error' }, `${label}: attacker key, attacker kid`)
      const ourKid = new MockJwtClient({ key: attackerWithOurKid, claims: client.claims }).sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid, ...extra, ...(extra.jwk === undefined ? {} : { jwk: attackerWithOurKid.toJSON() }) }, claims)
      await probe(t, fx, `Bearer ${ourKid}`, { status: 401, type: 'auth_token_signature_untrusted' }, `${label}: attacker key, our kid`)
      const noKid = new MockJwtClient({ key: attacker, claims: client.claims }).sign({ alg: 'RS256', typ: 'JWT', ...extra }, claims)
      await probe(t, fx, `Bearer ${noKid}`, { status: 401, type: 'auth_token_key_error' }, `${label}: attacker key, no kid`)
      // Signed by the real key: the extra header members are simply ignored.
      const genuine = client.sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid, ...extra }, claims)
      await probe(t, fx, `Bearer ${genuine}`, { status: 200 }, `${label}: genuine token, pointer ignored`)
    }
    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: kid

  t.test('kid: missing, unknown, odd types and values never throw', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    const claims = claimsOf(client)
    const keyOrInvalid = ['auth_token_key_error', 'auth_token_invalid']
    const cases: Array<[string, Record<string, unknown>, string | string[]]> = [
      ['missing', {}, 'auth_token_key_error'],
      ['unknown', { kid: 'unknown-kid' }, 'auth_token_key_error'],
      ['our kid upper-cased', { kid: client.key.kid.toUpperCase() }, 'auth_token_key_error'],
      ['our kid with a space', { kid: `${client.key.kid} ` }, 'auth_token_key_error'],
      ['our kid as a prefix', { kid: client.key.kid.slice(0, 8) }, 'auth_token_key_error'],
      ['number', { kid: 42 }, keyOrInvalid],
      ['object', { kid: { kid: client.key.kid } }, keyOrInvalid],
      ['array', { kid: [client.key.kid] }, keyOrInvalid],
      ['boolean', { kid: true }, keyOrInvalid],
      ['null', { kid: null }, keyOrInvalid],
      ['empty string', { kid: '' }, keyOrInvalid],
      ['enormous (10 kB)', { kid: 'k'.repeat(10_000) }, keyOrInvalid],
      ['enormous (40 kB, our kid repeated)', { kid: client.key.kid.repeat(1100) }, keyOrInvalid],
      ['path-like', { kid: '../../../../etc/passwd' }, keyOrInvalid],
      ['absolute path', { kid: '/discovery/v2.0/keys' }, keyOrInvalid],
      ['windows path', { kid: 'C:\\Windows\\win.ini' }, keyOrInvalid],
      ['URL (colon)', { kid: 'https://evil.example.com/keys' }, keyOrInvalid],
      ['colon', { kid: `${client.key.kid}:1` }, keyOrInvalid],
      ['percent-encoded traversal', { kid: '%2e%2e%2f%2e%2e%2f' }, keyOrInvalid],
      ['percent-encoded NUL', { kid: `${client.key.kid}%00` }, keyOrInvalid],
      ['NUL character', { kid: `${client.key.kid}\u0000` }, keyOrInvalid],
      ['lone high surrogate', { kid: '\uD800' }, keyOrInvalid],
      ['lone low surrogate after our kid', { kid: `${client.key.kid}\uDC00` }, keyOrInvalid],
      ['__proto__', { kid: '__proto__' }, keyOrInvalid],
      ['constructor', { kid: 'constructor' }, keyOrInvalid],
      ['hasOwnProperty', { kid: 'hasOwnProperty' }, keyOrInvalid]
    ]
    for (const [label, kid, type] of cases) {
      const token = client.sign({ alg: 'RS256', typ: 'JWT', ...kid }, claims)
      await probe(t, fx, `Bearer ${token}`, { status: 401, type }, `kid ${label}`)
    }
    // The lone surrogate survives JSON.stringify as an escape, so the plugin really saw it.
    t.match(Buffer.from(client.sign({ alg: 'RS256', kid: '\uD800' }, claims).split('.')[0]!, 'base64url').toString(), /\\ud800/)
    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: crit

  t.test('crit header is refused', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    const claims = claimsOf(client)
    for (const crit of [['exp'], ['b64'], [], 'exp', null, {}]) {
      const token = client.sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid, crit, exp: 1, b64: true }, claims)
      await probe(t, fx, `Bearer ${token}`, { status: 401, type: 'auth_token_invalid' }, `crit ${JSON.stringify(crit)}`)
    }
    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: structure

  t.test('structure: segments, base64url, JSON objects', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    const good = client.generate()
    const [h, p, s] = good.split('.') as [string, string, string]
    const invalid = { status: 401, type: 'auth_token_invalid' }
    const segments: Array<[string, string]> = [
      ['one segment', h],
      ['one segment, no dots', 'Invalid'],
      ['two segments', `${h}.${p}`],
      ['four segments', `${good}.${s}`],
      ['five segments (JWE shape)', `${h}.${p}.${s}.${s}.${s}`],
      ['trailing dot', `${good}.`],
      ['leading dot', `.${good}`],
      ['only dots', '..'],
      ['empty header', `.${p}.${s}`],
      ['empty payload', `${h}..${s}`],
      ['doubled dot', `${h}..${p}.${s}`]
    ]
    for (const [label, token] of segments) await probe(t, fx, `Bearer ${token}`, invalid, label)

    const base64: Array<[string, string]> = [
      ['standard base64 "+" in the header', `${h.slice(0, -1)}+.${p}.${s}`],
      ['standard base64 "/" in the payload', `${h}.${p.slice(0, -1)}/.${s}`],
      ['"~" in the signature', `${h}.${p}.${s.slice(0, -1)}~`],
      ['padding on the signature', `${h}.${p}.${s}=`],
      ['padding on the signature (two)', `${h}.${p}.${s}==`],
      ['header length 1 mod 4', `${oneMod4(h)}.${p}.${s}`],
      ['payload length 1 mod 4', `${h}.${oneMod4(p)}.${s}`],
      ['signature length 1 mod 4', `${h}.${p}.${oneMod4(s)}`]
    ]
    for (const [label, token] of base64) await probe(t, fx, `Bearer ${token}`, invalid, label)
    // '=' inside the credential is not even an RFC 6750 b64token.
    await probe(t, fx, `Bearer ${h}=.${p}.${s}`, { status: 401, type: ['auth_header_invalid', 'auth_token_invalid'] }, 'padding on the header')

    const key = client.key.privateKey
    const header = JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: client.key.kid })
    const payload = JSON.stringify(claimsOf(client))
    const notObjects = ['not json', '{"alg":"RS256"', '', '[]', '["RS256"]', '"RS256"', 'null', '42', 'true', '{"alg":"RS256"}garbage', '\u0000']
    for (const text of notObjects) {
      await probe(t, fx, `Bearer ${signText(key, text, payload)}`, invalid, `header ${JSON.stringify(text)}`)
      await probe(t, fx, `Bearer ${signText(key, header, text)}`, invalid, `payload ${JSON.stringify(text)}`)
    }
    // Through the test kit's own signer too (JSON values that are not objects).
    for (const value of [[], ['a'], 'claims', null, 7]) {
      await probe(t, fx, `Bearer ${client.sign({ alg: 'RS256', typ: 'JWT', kid: client.key.kid }, value)}`, invalid, `payload ${JSON.stringify(value)}`)
    }
    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: time claims

  t.test('time claims must be finite numbers', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    await probe(t, fx, `Bearer ${withRawClaim(client, 'exp', String(Math.floor(Date.now() / 1000) + 600))}`, { status: 200 }, 'control: raw numeric exp')
    const hostile = ['"4070908800"', '"never"', '{}', '{"$gt":0}', 'true', 'false', '[4070908800]', '1e400', '-1e400', '""']
    for (const claim of ['exp', 'nbf']) {
      for (const text of hostile) {
        await probe(t, fx, `Bearer ${withRawClaim(client, claim, text)}`, { status: 401, type: 'auth_token_invalid' }, `${claim} ${text}`)
      }
      const res = await probe(t, fx, `Bearer ${withRawClaim(client, claim, 'null')}`, { status: 401, type: 'auth_token_claim_missing' }, `${claim} null`)
      t.match(res.json().detail, claim, 'detail names the claim')
    }
    for (const text of ['"1700000000"', '1e400', '{}']) {
      await probe(t, fx, `Bearer ${withRawClaim(client, 'iat', text)}`, { status: 401, type: 'auth_token_invalid' }, `iat ${text}`)
    }
    await probe(t, fx, `Bearer ${client.generate({ exp: Math.floor(Date.now() / 1000) - 10 })}`, { status: 401, type: 'auth_token_expired' }, 'control: past exp')
    await probe(t, fx, `Bearer ${client.generate({ nbf: 4070908800 })}`, { status: 401, type: 'auth_token_immature' }, 'control: future nbf')
    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: issuer

  t.test('issuer: exact match only', async t => {
    t.test('discovery issuer as published', async t => {
      const fx = await seedFixture(t)
      const { client } = fx
      await probe(t, fx, `Bearer ${client.generate({ iss: MOCK_ISSUER })}`, { status: 200 }, 'control: exact issuer')
      const variants = [
        `${MOCK_ISSUER}/`, MOCK_ISSUER.toUpperCase(), 'HTTPS://issuer.auth.example.com', 'https://Issuer.auth.example.com',
        `${MOCK_ISSUER}.evil.com`, `https://evil.com/${MOCK_ISSUER}`, `https://evil.com/?iss=${MOCK_ISSUER}`, MOCK_ISSUER.slice(0, -1),
        ` ${MOCK_ISSUER}`, `${MOCK_ISSUER} `, `${MOCK_ISSUER}\u0000`, 'https://issuer.auth.example.com:443', `${MOCK_ISSUER}/.`,
        'http://issuer.auth.example.com', 'https://issuer.auth.example.com#', '.*', '^https://issuer', 'issuer.auth.example.com', ''
      ]
      for (const iss of variants) {
        await probe(t, fx, `Bearer ${client.generate({ iss })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, `iss ${JSON.stringify(iss)}`)
      }
      for (const iss of [[MOCK_ISSUER], [MOCK_ISSUER, 'https://evil.com'], ['https://evil.com', MOCK_ISSUER], { iss: MOCK_ISSUER }, 42, true]) {
        await probe(t, fx, `Bearer ${client.generate({ iss })}`, { status: 401, type: ['auth_token_invalid', 'auth_token_issuer_untrusted'] }, `iss ${JSON.stringify(iss)}`)
      }
      noFetch(t, fx)
    })

    t.test('single-tenant Entra issuer', async t => {
      const fx = await entraFixture(t)
      const { entra, client } = fx
      const tid = entra.tenantId
      await probe(t, fx, `Bearer ${client.generate()}`, { status: 200 }, 'control: v2 token')
      const variants = [
        `https://login.microsoftonline.com/${tid}/v2.0/`, `https://login.microsoftonline.com/${tid.toUpperCase()}/v2.0`,
        `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, 'https://login.microsoftonline.com/{tenantid}/v2.0',
        'https://login.microsoftonline.com/common/v2.0', 'https://login.microsoftonline.com/organizations/v2.0',
        `https://login.microsoftonline.us/${tid}/v2.0`, `https://login.microsoftonline.com/${tid}/v2.0/evil`,
        `https://login.microsoftonline.com/${tid}`, `https://login.microsoftonline.com.evil.com/${tid}/v2.0`
      ]
      for (const iss of variants) {
        await probe(t, fx, `Bearer ${client.generate({ iss })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, `iss ${iss}`)
      }
      // A token of another tenant that names it consistently in `iss` and `tid`.
      await probe(t, fx, `Bearer ${client.generate({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, tid: OTHER_TENANT })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, 'another tenant, consistent tid')
      noFetch(t, fx)
    })

    t.test('multi-tenant issuer is bound to tid', async t => {
      const fx = await entraFixture(t, {}, { tenant: 'organizations' })
      const { entra, client } = fx
      const tid = entra.tenantId
      const issuerOf = (tenant: string): string => `https://login.microsoftonline.com/${tenant}/v2.0`
      await probe(t, fx, `Bearer ${client.generate({ iss: issuerOf(tid), tid })}`, { status: 200 }, 'control: iss bound to tid')
      await probe(t, fx, `Bearer ${client.generate({ iss: issuerOf(OTHER_TENANT), tid: OTHER_TENANT })}`, { status: 200 }, 'control: another tenant (no allow-list)')
      const cases: Array<[string, Record<string, unknown>]> = [
        ['iss of another tenant than tid', { iss: issuerOf(OTHER_TENANT), tid }],
        ['template as issuer', { iss: issuerOf('{tenantid}'), tid }],
        ['template as issuer and as tid', { iss: issuerOf('{tenantid}'), tid: '{tenantid}' }],
        ['no tid', { iss: issuerOf(tid), tid: false }],
        ['tid not a GUID', { iss: issuerOf('contoso'), tid: 'contoso' }],
        ['tid regex', { iss: issuerOf('.*'), tid: '.*' }],
        ['tid upper-case', { iss: issuerOf(tid.toUpperCase()), tid: tid.toUpperCase() }],
        ['tid an array', { iss: issuerOf(tid), tid: [tid] }],
        ['trailing slash', { iss: `${issuerOf(tid)}/`, tid }],
        ['tid with a path', { iss: issuerOf(`${tid}/x`), tid: `${tid}/x` }]
      ]
      for (const [label, overrides] of cases) {
        await probe(t, fx, `Bearer ${client.generate(overrides)}`, { status: 401, type: 'auth_token_issuer_untrusted' }, label)
      }
      noFetch(t, fx)
    })

    t.test('allowedTenants', async t => {
      const fx = await entraFixture(t, { allowedTenants: [OTHER_TENANT] }, { tenant: 'organizations' })
      const { entra, client } = fx
      const tid = entra.tenantId
      await probe(t, fx, `Bearer ${client.generate({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, tid: OTHER_TENANT })}`, { status: 200 }, 'allowed tenant')
      await probe(t, fx, `Bearer ${client.generate({ iss: `https://login.microsoftonline.com/${tid}/v2.0`, tid })}`, { status: 401, type: 'auth_token_issuer_untrusted' }, 'tenant not allowed')
      noFetch(t, fx)
    })
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: audience

  t.test('audience: exact member of the accepted set', async t => {
    const fx = await seedFixture(t, { audiences: ['https://api.contoso.com'] })
    const { client } = fx
    for (const aud of [CLIENT_ID, `api://${CLIENT_ID}`, 'https://api.contoso.com', ['https://other.example.com', CLIENT_ID]]) {
      await probe(t, fx, `Bearer ${client.generate({ aud })}`, { status: 200 }, `accepted aud ${JSON.stringify(aud)}`)
    }
    const refused = [
      'test_app', 'test_app_10', `${CLIENT_ID} `, CLIENT_ID.toUpperCase(), `api://${CLIENT_ID}/`, `api://${CLIENT_ID}/.default`,
      `api://${CLIENT_ID.toUpperCase()}`, `api:/${CLIENT_ID}`, `${CLIENT_ID}/`, 'test_app_2', 'c0ffee00-0000-4000-8000-000000000002',
      '00000003-0000-0000-c000-000000000000', 'https://graph.microsoft.com', 'https://graph.microsoft.com/', 'https://management.azure.com/',
      'https://api.contoso.com/', 'https://api.contoso.co', 'https://API.contoso.com', '*', '', ['https://other.example.com'],
      ['00000003-0000-0000-c000-000000000000'], [`${CLIENT_ID}x`, `x${CLIENT_ID}`]
    ]
    for (const aud of refused) {
      await probe(t, fx, `Bearer ${client.generate({ aud })}`, { status: 401, type: 'auth_token_audience_invalid' }, `aud ${JSON.stringify(aud)}`)
    }
    const graph = await probe(t, fx, `Bearer ${client.generate({ aud: '00000003-0000-0000-c000-000000000000' })}`, { status: 401, type: 'auth_token_audience_invalid' }, 'Graph token')
    t.match(graph.json().detail, /Graph/, 'a Graph token is named as such')
    for (const aud of [[], [42], { aud: CLIENT_ID }, 42, [[CLIENT_ID]]]) {
      await probe(t, fx, `Bearer ${client.generate({ aud })}`, { status: 401, type: ['auth_token_invalid', 'auth_token_audience_invalid'] }, `aud ${JSON.stringify(aud)}`)
    }
    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: version confusion

  t.test('version confusion', async t => {
    t.test('both versions accepted', async t => {
      const fx = await entraFixture(t)
      const { entra } = fx
      const v1 = entra.client(API_ID, 'v1')
      const v2 = entra.client(API_ID, 'v2')
      const v1Issuer = entra.issuerFor(entra.tenantId, '1.0')
      const v2Issuer = entra.issuerFor(entra.tenantId, '2.0')
      await probe(t, fx, `Bearer ${v1.generate()}`, { status: 200 }, 'control: v1 preset')
      await probe(t, fx, `Bearer ${v2.generate()}`, { status: 200 }, 'control: v2 preset')
      await probe(t, fx, `Bearer ${entra.client(API_ID, 'app').generate()}`, { status: 200 }, 'control: app-only preset')
      await probe(t, fx, `Bearer ${v1.generate({ aud: API_ID })}`, { status: 200 }, 'control: v1 token with the client ID as aud')

      const untrusted = { status: 401, type: 'auth_token_issuer_untrusted' }
      // A 1.0 token under the discovery issuer is Azure AD B2C's shape, held to `azp` (not `appid`).
      await probe(t, fx, `Bearer ${v1.generate({ iss: v2Issuer })}`, { status: 401, type: 'auth_token_claim_missing' }, 'ver 1.0 with the v2 issuer, no azp')
      await probe(t, fx, `Bearer ${v2.generate({ iss: v1Issuer })}`, untrusted, 'ver 2.0 with the v1 issuer')
      await probe(t, fx, `Bearer ${v1.generate({ ver: '2.0', azp: CLIENT_APP })}`, untrusted, 'v1 token relabelled ver 2.0 (azp added)')
      // …so a v2 token relabelled 1.0 is that shape; its client is still `azp`, never the `appid` added.
      const relabelled = v2.generate({ ver: '1.0', additionalClaims: { appid: OTHER_TENANT } })
      await probe(t, fx, `Bearer ${relabelled}`, { status: 200 }, 'v2 token relabelled ver 1.0 (appid added): B2C shape')
      const { clientId } = await fx.app.entraAuth.verify(relabelled)
      t.equal(clientId, CLIENT_APP, 'the client is azp, not the appid')
      await probe(t, fx, `Bearer ${v2.generate({ ver: '1.0', azp: false, additionalClaims: { appid: CLIENT_APP } })}`, { status: 401, type: 'auth_token_claim_missing' }, 'v2 token relabelled ver 1.0 without azp: appid does not stand in')
      await probe(t, fx, `Bearer ${v1.generate({ iss: `https://sts.windows.net/${entra.tenantId}` })}`, untrusted, 'v1 issuer without its trailing slash')
      await probe(t, fx, `Bearer ${v1.generate({ iss: `https://sts.windows.net/${OTHER_TENANT}/` })}`, untrusted, 'v1 issuer of another tenant')
      await probe(t, fx, `Bearer ${v1.generate({ iss: `https://sts.windows.net/${OTHER_TENANT}/`, tid: OTHER_TENANT })}`, untrusted, 'v1 issuer of another tenant, consistent tid')

      // Each version's own client claim is required; the other one does not stand in for it.
      const v1NoAppid = await probe(t, fx, `Bearer ${v1.generate({ appid: false, azp: CLIENT_APP })}`, { status: 401, type: 'auth_token_claim_missing' }, 'ver 1.0 with azp but no appid')
      t.match(v1NoAppid.json().detail, /appid/)
      const v2NoAzp = await probe(t, fx, `Bearer ${v2.generate({ azp: false, additionalClaims: { appid: CLIENT_APP } })}`, { status: 401, type: 'auth_token_claim_missing' }, 'ver 2.0 with appid but no azp')
      t.match(v2NoAzp.json().detail, /azp/)

      for (const ver of [2, '2', 'v2.0', '2.0 ', '3.0', 1, '1', ['2.0'], '']) {
        await probe(t, fx, `Bearer ${v2.generate({ ver })}`, { status: 401, type: 'auth_token_ver_not_supported' }, `ver ${JSON.stringify(ver)}`)
      }
      noFetch(t, fx)
    })

    t.test('tokenVersions limits the accepted versions', async t => {
      const only2 = await entraFixture(t, { tokenVersions: ['2.0'] })
      await probe(t, only2, `Bearer ${only2.entra.client(API_ID, 'v2').generate()}`, { status: 200 }, 'v2 accepted')
      await probe(t, only2, `Bearer ${only2.entra.client(API_ID, 'v1').generate()}`, { status: 401, type: 'auth_token_ver_not_supported' }, 'v1 refused')
      const only1 = await entraFixture(t, { tokenVersions: ['1.0'] })
      await probe(t, only1, `Bearer ${only1.entra.client(API_ID, 'v1').generate()}`, { status: 200 }, 'v1 accepted')
      await probe(t, only1, `Bearer ${only1.entra.client(API_ID, 'v2').generate()}`, { status: 401, type: 'auth_token_ver_not_supported' }, 'v2 refused')
    })
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: scopes and roles

  t.test('scopes and roles: exact, case-sensitive words', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    const insufficient = (url: string): Expected => ({ status: 403, type: 'auth_token_insufficient_scopes', url })
    const only = (claims: Record<string, unknown>): string => `Bearer ${client.generate({ scp: false, roles: false, ...claims })}`

    await probe(t, fx, only({ scp: 'SCOPE_A SCOPE_B' }), { status: 200, url: '/scopes/0' }, 'control: A B')
    await probe(t, fx, only({ scp: '  SCOPE_A   SCOPE_B ' }), { status: 200, url: '/scopes/0' }, 'control: extra spaces')
    await probe(t, fx, only({ scp: 'SCOPE_A', roles: ['SCOPE_B'] }), { status: 200, url: '/scopes/0' }, 'control: scp ∪ roles')
    await probe(t, fx, only({ roles: ['ROLE_1', 'ROLE_2'] }), { status: 200, url: '/scopes/3' }, 'control: roles 1 2')

    const res = await probe(t, fx, only({ scp: 'scope_a scope_b' }), insufficient('/scopes/0'), 'lower-case scopes')
    t.match(res.headers['www-authenticate'], `scope="api://${CLIENT_ID}/SCOPE_A api://${CLIENT_ID}/SCOPE_B"`, 'challenge names the required scopes')
    await probe(t, fx, only({ scp: 'Scope_A Scope_B' }), insufficient('/scopes/0'), 'mixed-case scopes')
    await probe(t, fx, only({ scp: 'SCOPE_ASCOPE_B' }), insufficient('/scopes/1'), 'concatenated scopes')
    await probe(t, fx, only({ scp: 'SCOPE_A_EXTRA XSCOPE_B' }), insufficient('/scopes/1'), 'scope with a suffix / prefix')
    await probe(t, fx, only({ scp: 'SCOPE_' }), insufficient('/scopes/1'), 'scope prefix')
    await probe(t, fx, only({ scp: 'SCOPE_A,SCOPE_B' }), insufficient('/scopes/0'), 'comma-separated scopes')
    await probe(t, fx, only({ scp: 'SCOPE_A\tSCOPE_B' }), insufficient('/scopes/0'), 'tab-separated scopes')
    await probe(t, fx, only({ scp: 'SCOPE_A\nSCOPE_B' }), insufficient('/scopes/0'), 'newline-separated scopes')
    await probe(t, fx, only({ scp: ['SCOPE_A', 'SCOPE_B'] }), insufficient('/scopes/0'), 'scp as an array adds nothing')
    await probe(t, fx, only({ scp: { SCOPE_A: true, SCOPE_B: true } }), insufficient('/scopes/0'), 'scp as an object adds nothing')
    await probe(t, fx, only({ scp: '*' }), insufficient('/scopes/0'), 'wildcard scope')

    await probe(t, fx, only({ roles: 'ROLE_1' }), insufficient('/scopes/4'), 'roles as a string adds nothing')
    await probe(t, fx, only({ roles: 'ROLE_1 ROLE_2' }), insufficient('/scopes/3'), 'roles string is not split')
    await probe(t, fx, only({ roles: ['ROLE_1 ROLE_2'] }), insufficient('/scopes/3'), 'a role containing a space is one role')
    await probe(t, fx, only({ roles: ['ROLE_1 ROLE_2'] }), insufficient('/scopes/4'), 'a role containing a space matches neither')
    await probe(t, fx, only({ roles: ['role_1', 'role_2'] }), insufficient('/scopes/3'), 'lower-case roles')
    await probe(t, fx, only({ roles: [['ROLE_1'], { ROLE_2: true }, 1, null] }), insufficient('/scopes/4'), 'non-string roles')
    await probe(t, fx, only({ roles: ['ROLE_', 'ROLE_12'] }), insufficient('/scopes/4'), 'role prefix / suffix')
    await probe(t, fx, only({ roles: { 0: 'ROLE_1', length: 1 } }), insufficient('/scopes/4'), 'array-like roles object')

    // Malformed scp / roles leave the token valid (authentication only).
    await probe(t, fx, only({ scp: ['SCOPE_A'], roles: 'ROLE_1' }), { status: 200 }, 'malformed scp and roles, authentication-only route')

    // A token that fails authorization never becomes request.entraToken.
    const rejected = fx.seenTokens.filter(seen => seen.status !== 200)
    t.ok(rejected.length > 0)
    t.ok(rejected.every(seen => seen.token === null), 'request.entraToken stays null on every rejected request')
    t.ok(fx.seenTokens.filter(seen => seen.status === 200).every(seen => seen.token !== null), 'and is set on admitted ones')
    noFetch(t, fx)
  })

  // ---------------------------------------------------------------------------------------------
  // Tokens: allow-lists

  t.test('allow-lists: azp for v2, appid for v1, never a fallback', async t => {
    t.test('seed fixture (v2, allowedApps test_app_2, allowedSubjects test_subject)', async t => {
      const fx = await seedFixture(t)
      const { client } = fx
      await probe(t, fx, `Bearer ${client.generate()}`, { status: 200 }, 'control: azp allowed')
      const denied = { status: 403, type: 'auth_token_azp_not_trusted' }
      await probe(t, fx, `Bearer ${client.generate({ azp: 'other_app', additionalClaims: { appid: 'test_app_2' } })}`, denied, 'v2: azp not allowed, appid allowed')
      await probe(t, fx, `Bearer ${client.generate({ azp: 'TEST_APP_2' })}`, denied, 'azp case')
      await probe(t, fx, `Bearer ${client.generate({ azp: 'test_app_2 ' })}`, denied, 'azp padded')
      await probe(t, fx, `Bearer ${client.generate({ azp: ['test_app_2'] })}`, { status: 403, type: ['auth_token_azp_not_trusted'] }, 'azp as an array')
      await probe(t, fx, `Bearer ${client.generate({ azp: false, additionalClaims: { appid: 'test_app_2' } })}`, { status: 401, type: 'auth_token_claim_missing' }, 'v2 without azp, appid allowed')
      const subject = { status: 403, type: 'auth_token_subject_not_trusted' }
      await probe(t, fx, `Bearer ${client.generate({ sub: 'TEST_SUBJECT' })}`, subject, 'sub case')
      await probe(t, fx, `Bearer ${client.generate({ sub: 'test_subject_2' })}`, subject, 'sub suffix')
      await probe(t, fx, `Bearer ${client.generate({ sub: ['test_subject'] })}`, { status: 401, type: 'auth_token_invalid' }, 'sub as an array')
      noFetch(t, fx)
    })

    t.test('Entra fixture, both versions', async t => {
      const fx = await entraFixture(t, { allowedApps: [CLIENT_APP] })
      const { entra } = fx
      const v1 = entra.client(API_ID, 'v1')
      const v2 = entra.client(API_ID, 'v2')
      await probe(t, fx, `Bearer ${v1.generate()}`, { status: 200 }, 'control: v1 appid allowed')
      await probe(t, fx, `Bearer ${v2.generate()}`, { status: 200 }, 'control: v2 azp allowed')
      const denied = { status: 403, type: 'auth_token_azp_not_trusted' }
      await probe(t, fx, `Bearer ${v1.generate({ azp: CLIENT_APP, appid: 'd0000000-0000-4000-8000-00000000dead' })}`, denied, 'v1: appid not allowed, azp allowed')
      await probe(t, fx, `Bearer ${v2.generate({ azp: 'd0000000-0000-4000-8000-00000000dead', additionalClaims: { appid: CLIENT_APP } })}`, denied, 'v2: azp not allowed, appid allowed')
      await probe(t, fx, `Bearer ${v1.generate({ appid: false, azp: CLIENT_APP })}`, { status: 401, type: 'auth_token_claim_missing' }, 'v1 without appid')
      noFetch(t, fx)
    })
  })

  // ---------------------------------------------------------------------------------------------
  // The Authorization header

  t.test('Authorization header', async t => {
    const fx = await seedFixture(t)
    const { client } = fx
    const token = client.generate()
    const invalid = { status: 401, type: 'auth_header_invalid' }

    t.test('scheme is case-insensitive', async t => {
      for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
        await probe(t, fx, `${scheme} ${token}`, { status: 200 }, `scheme ${scheme}`)
      }
    })

    t.test('missing or empty', async t => {
      const res = await probe(t, fx, undefined, { status: 401, type: 'auth_header_missing' }, 'no header')
      t.equal(res.headers['www-authenticate'], 'Bearer', 'no error attribute without credentials')
      await probe(t, fx, '', { status: 401, type: 'auth_header_missing' }, 'empty header')
    })

    t.test('not exactly "Bearer <token>"', async t => {
      const cases: Array<[string, string]> = [
        ['scheme alone', 'Bearer'],
        ['scheme and a space', 'Bearer '],
        ['token alone', token],
        ['no space', `Bearer${token}`],
        ['tab', `Bearer\t${token}`],
        ['trailing word', `Bearer ${token} extra`],
        ['comma-joined credentials', `Bearer ${token}, Bearer ${token}`],
        ['comma-joined tokens', `Bearer ${token},${token}`],
        ['comma-joined with Basic', `Bearer ${token}, Basic dXNlcjpwYXNz`],
        ['Basic', 'Basic dXNlcjpwYXNz'],
        ['Basic carrying the token', `Basic ${token}`],
        ['DPoP', `DPoP ${token}`],
        ['Token', `Token ${token}`],
        ['JWT', `JWT ${token}`],
        ['Bearer with auth-params', `Bearer token="${token}"`],
        ['quoted token', `Bearer "${token}"`],
        ['whitespace only', '   '],
        ['Negotiate', 'Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHgYKKwYBBAGCNwICCg==']
      ]
      for (const [label, header] of cases) await probe(t, fx, header, invalid, label)
    })

    t.test('control characters and non-ASCII', async t => {
      const cases: Array<[string, string]> = [
        ['NUL inside the token', `Bearer ${token.slice(0, 20)}\u0000${token.slice(20)}`],
        ['NUL after the token', `Bearer ${token}\u0000`],
        ['SOH before the token', `Bearer \u0001${token}`],
        ['DEL', `Bearer ${token}\u007f`],
        ['CR LF header injection', `Bearer ${token}\r\nX-Injected: 1`],
        ['vertical tab', `Bearer\u000b${token}`],
        ['NEL', `Bearer ${token}\u0085`],
        ['non-breaking space separator', `Bearer\u00a0${token}`],
        ['non-ASCII token', 'Bearer tökén'],
        ['non-ASCII after the token', `Bearer ${token}é`],
        ['non-ASCII scheme', `Beärer ${token}`],
        ['full-width scheme', `Ｂｅａｒｅｒ ${token}`],
        ['BOM before the token', `Bearer \ufeff${token}`],
        ['emoji', `Bearer ${token}\u{1F600}`],
        ['zero-width space in the token', `Bearer ${token.slice(0, 30)}\u200b${token.slice(30)}`],
        ['lone surrogate', `Bearer ${token}\ud800`]
      ]
      for (const [label, header] of cases) await probeRaw(t, fx, header, 'auth_header_invalid', label)
    })

    t.test('a 1 MB header', async t => {
      // A bearer credential beyond 64 KiB is refused for its size before it is looked at.
      await probeRaw(t, fx, `Bearer ${'a'.repeat(1024 * 1024)}`, ['auth_header_invalid', 'auth_token_invalid'], '1 MB of a')
      await probeRaw(t, fx, `Bearer ${token}${'A'.repeat(1024 * 1024)}`, ['auth_header_invalid', 'auth_token_invalid'], 'token + 1 MB')
      await probeRaw(t, fx, `Bearer ${(token + '.').repeat(Math.ceil(1024 * 1024 / token.length))}`, ['auth_header_invalid', 'auth_token_invalid'], '1 MB of repeated tokens')
      await probeRaw(t, fx, `${'Bearer'.repeat(200_000)} ${token}`, 'auth_header_invalid', '1 MB scheme')
    })

    t.test('only the Authorization header is read', async t => {
      secrets.add(token)
      const query = await fx.app.inject({ method: 'GET', url: `/restricted?access_token=${token}` })
      checkReply(t, query, { status: 401, type: 'auth_header_missing' }, token, 'access_token in the query string')
      const queryBearer = await fx.app.inject({ method: 'GET', url: `/restricted?authorization=Bearer%20${token}` })
      checkReply(t, queryBearer, { status: 401, type: 'auth_header_missing' }, token, 'authorization in the query string')
      const form = await fx.app.inject({ method: 'POST', url: '/restricted', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `access_token=${token}` })
      checkReply(t, form, { status: 401, type: 'auth_header_missing' }, token, 'access_token in a form body')
      const json = await fx.app.inject({ method: 'POST', url: '/restricted', payload: { access_token: token, authorization: `Bearer ${token}` } })
      checkReply(t, json, { status: 401, type: 'auth_header_missing' }, token, 'access_token in a JSON body')
      for (const [name, value] of [['x-access-token', token], ['proxy-authorization', `Bearer ${token}`], ['cookie', `access_token=${token}`], ['x-authorization', `Bearer ${token}`]] as const) {
        const res = await fx.app.inject({ method: 'GET', url: '/restricted', headers: { [name]: value } })
        checkReply(t, res, { status: 401, type: 'auth_header_missing' }, token, `token in ${name}`)
      }
    })

    t.test('tokens of at least 12 kB are accepted', async t => {
      const large = client.generate({ additionalClaims: { groups: Array.from({ length: 320 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`) } })
      t.ok(large.length >= 12 * 1024, `token is ${large.length} characters`)
      await probe(t, fx, `Bearer ${large}`, { status: 200 }, '12 kB token')
      const larger = client.generate({ additionalClaims: { padding: 'x'.repeat(24 * 1024) } })
      await probe(t, fx, `Bearer ${larger}`, { status: 200 }, '32 kB token')
    })

    t.test('no fetch was caused by any header', async t => { noFetch(t, fx) })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('on a cold verifier, tokens failing shape, alg or kid checks cost no fetch', async t => {
    const entra = new FakeEntra({ issuer: MOCK_ISSUER, keyIssuer: null })
    const verifier = createEntraVerifier({ clientId: CLIENT_ID, ...entra.pluginOptions() })
    t.teardown(async () => {
      await verifier.close()
      await entra.close()
    })
    const client = new MockJwtClient({ key: entra.keys[0]!, claims: new MockClaims({ selfAppId: CLIENT_ID }) })
    const claims = claimsOf(client)
    const kid = client.key.kid
    const good = client.generate()
    const [h, p] = good.split('.') as [string, string, string]
    const hostile: Array<[string, string, string]> = [
      ['', '', 'auth_token_invalid'],
      ['Invalid', 'Invalid', 'auth_token_invalid'],
      ['two segments', `${h}.${p}`, 'auth_token_invalid'],
      ['empty signature', `${h}.${p}.`, 'auth_token_invalid'],
      ['alg none', `${seg({ alg: 'none', kid })}.${p}.`, 'auth_token_invalid'],
      ['alg HS256', client.sign({ alg: 'HS256', kid }, claims), 'auth_token_invalid'],
      ['no alg', client.sign({ kid }, claims), 'auth_token_invalid'],
      ['crit', client.sign({ alg: 'RS256', kid, crit: ['exp'] }, claims), 'auth_token_invalid'],
      ['payload an array', client.sign({ alg: 'RS256', kid }, []), 'auth_token_invalid'],
      ['no kid', client.generateEmpty(), 'auth_token_key_error'],
      ['kid a number', client.sign({ alg: 'RS256', kid: 1 }, claims), 'auth_token_invalid'],
      ['kid enormous', client.sign({ alg: 'RS256', kid: 'k'.repeat(5000) }, claims), 'auth_token_invalid'],
      ['kid a lone surrogate', client.sign({ alg: 'RS256', kid: '\uD800' }, claims), 'auth_token_invalid']
    ]
    for (const [label, token, type] of hostile) {
      let caught: unknown
      await verifier.verify(token).catch((err: unknown) => { caught = err })
      t.ok(caught instanceof EntraAuthError, `${label}: rejected with EntraAuthError`)
      t.equal((caught as EntraAuthError).type, type, `${label}: ${type}`)
      t.same(await verifier.introspect(token), { active: false }, `${label}: introspection inactive`)
    }
    t.same(entra.requests, { discovery: 0, jwks: 0 }, 'no discovery or JWKS fetch')
    t.same(evilHits, [])
    t.equal((await verifier.verify(good)).claims.sub, 'test_subject', 'control: a good token then loads the keys')
    t.same(entra.requests, { discovery: 1, jwks: 1 })
  })

  // ---------------------------------------------------------------------------------------------

  t.test('replies and logs', async t => {
    t.ok(secrets.size > 100, `${secrets.size} credentials were sent`)
    // Fastify's own request log line carries the URL (and so the query-string token); ours must not.
    const joined = logs.filter(line => !line.includes('"msg":"incoming request"')).join('')
    t.ok(joined.includes('auth_token_invalid'), 'rejections are logged with their problem type')
    const leaked = [...secrets].filter(secret => secret.length >= 24 && joined.includes(secret))
    t.same(leaked.map(secret => secret.slice(0, 30)), [], 'no credential appears in the logs')
    t.notOk(/"level":50/.test(joined), 'nothing was logged as an unexpected error')
  })
})

/**
 * Hardening of the verified token and its decoding: a token is deeply immutable and never shows
 * its string, has one spelling, is valid UTF-8, has a bounded size, and no claim is inherited
 * from a polluted `Object.prototype`. The problem registry is frozen too.
 */
t.test('the verified token, hardened', async t => {
  const entra = new FakeEntra()
  const key = entra.keys[0] as MockJwk
  t.teardown(() => entra.close())

  const b64 = (bytes: Buffer | string): string => Buffer.from(bytes).toString('base64url')

  /** Signs arbitrary header and payload bytes with the fake's key, as Entra would sign JSON. */
  function signBytes (header: Buffer | string, payload: Buffer | string): string {
    const input = `${b64(header)}.${b64(payload)}`
    return `${input}.${sign('RSA-SHA256', Buffer.from(input), key.privateKey).toString('base64url')}`
  }

  function header (): string {
    return JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: key.kid })
  }

  function claims (extra: Record<string, unknown> = {}): Record<string, unknown> {
    const now = Math.floor(Date.now() / 1000)
    return { iss: entra.issuer, sub: 'alice', aud: API_ID, exp: now + 3600, nbf: now - 60, iat: now - 60, azp: 'c11e0000-0000-4000-8000-000000000001', ver: '2.0', tid: entra.tenantId, ...extra }
  }

  async function app (t: Test, options: Partial<EntraAuthOptions> = {}): Promise<FastifyInstance> {
    const fastify = Fastify({ logger: false })
    await fastify.register(entraAuth, { clientId: API_ID, rejectionLogLevel: 'silent', ...entra.pluginOptions(), ...options } as EntraAuthOptions)
    t.teardown(() => fastify.close())
    return fastify
  }

  /** The problem type a promise rejects with ('resolved' when it does not). */
  async function rejection (promise: Promise<unknown>): Promise<string> {
    try {
      await promise
      return 'resolved'
    } catch (err) {
      return err instanceof EntraAuthError ? err.type : String(err)
    }
  }

  async function problemType (fastify: FastifyInstance, url: string, token: string): Promise<string | number> {
    const res = await fastify.inject({ url, headers: { authorization: `Bearer ${token}` } })
    return res.statusCode === 200 ? 200 : (res.json() as { type: string }).type
  }

  t.test('a cached token is deeply immutable: one request cannot widen the next one\'s scopes', async t => {
    const fastify = await app(t)
    const attempts: Record<string, string> = {}
    fastify.get('/tamper', { onRequest: fastify.entraAuth() }, async (request) => {
      const token = request.entraToken as EntraToken
      const tries: Record<string, () => unknown> = {
        'scopes.push': () => (token.scopes as string[]).push('Admin.All'),
        'scopes[0]': () => { (token.scopes as string[])[0] = 'Admin.All' },
        'claims.scp': () => { (token.claims as Record<string, unknown>).scp = 'Admin.All' },
        'claims.roles.push': () => (token.claims.roles as string[]).push('Admin.All'),
        'claims nested object': () => { (token.claims.xms_st as Record<string, unknown>).sub = 'mallory' },
        'header.kid': () => { (token.header as Record<string, unknown>).kid = 'other' },
        'all.add': () => (token.all as Set<string>).add('Admin.All'),
        'Set.prototype.add on all': () => Set.prototype.add.call(token.all, 'Admin.All'),
        'roles.add': () => (token.roles as Set<string>).add('Admin.All'),
        'delegated.add': () => (token.delegated as Set<string>).add('Admin.All'),
        'token.scopes =': () => { (token as { scopes: string[] }).scopes = ['Admin.All'] },
        'token.version =': () => { (token as { version: string }).version = '1.0' }
      }
      for (const [name, attempt] of Object.entries(tries)) {
        try {
          attempt()
          attempts[name] = 'changed'
        } catch {
          attempts[name] = 'refused'
        }
      }
      return { ok: true }
    })
    fastify.get('/admin', { onRequest: fastify.entraAuth(['Admin.All']) }, async () => ({ ok: true }))
    const token = entra.token(API_ID, { scp: 'User.Read', roles: ['Reader'], additionalClaims: { xms_st: { sub: 'alice' } } })

    t.equal(await problemType(fastify, '/tamper', token), 200)
    for (const [name, outcome] of Object.entries(attempts)) t.equal(outcome, 'refused', `${name} is refused`)
    t.equal(await problemType(fastify, '/admin', token), 'auth_token_insufficient_scopes', 'the next request with the same (cached) token is not widened')

    const first = await fastify.entraAuth.verify(token)
    t.equal(await fastify.entraAuth.verify(token), first, 'a cache hit hands out the same instance')
    t.same(first.scopes, ['User.Read', 'Reader'])
    t.ok(Object.isFrozen(first), 'the token')
    t.ok(Object.isFrozen(first.claims) && Object.isFrozen(first.claims.roles) && Object.isFrozen(first.claims.xms_st), 'claims, deeply')
    t.ok(Object.isFrozen(first.header) && Object.isFrozen(first.scopes), 'header and scopes')
    t.same([...first.all], ['User.Read', 'Reader'], 'the permission sets still iterate')
    t.ok(first.all.has('Reader') && first.delegated.has('User.Read') && first.roles.has('Reader') && first.roles.size === 1)
    t.same([[...first.all.keys()], [...first.all.values()], [...first.all.entries()]], [['User.Read', 'Reader'], ['User.Read', 'Reader'], [['User.Read', 'User.Read'], ['Reader', 'Reader']]])
    const seen: string[] = []
    first.all.forEach(function (this: string[], value, again, set) { this.push(`${value}=${again}:${set === first.all}`) }, seen)
    t.same(seen, ['User.Read=User.Read:true', 'Reader=Reader:true'], 'forEach as a Set would')
  })

  t.test('the token string never shows: not enumerable, not in JSON, inspect, console.log or a spread', async t => {
    const fastify = await app(t)
    const raw = entra.token(API_ID, { scp: 'User.Read' })
    const token = await fastify.entraAuth.verify(raw)
    t.equal(token.raw, raw, 'it is still there for who asks for it')
    t.notOk(Object.keys(token).includes('raw'), 'not enumerable')
    t.notOk(Object.getOwnPropertyDescriptor(token, 'raw')?.enumerable)
    t.notMatch(JSON.stringify(token), raw)
    t.notOk('raw' in { ...token }, 'a spread leaves it out')
    t.notMatch(JSON.stringify({ ...token }), raw)
    for (const options of [{}, { showHidden: true }, { depth: Infinity, showHidden: true }]) {
      const shown = inspect(token, options)
      t.notMatch(shown, raw, `util.inspect ${JSON.stringify(options)}`)
      t.notMatch(shown, raw.split('.')[2] as string, 'not even the signature')
      t.match(shown, /EntraToken/)
      t.match(shown, /User\.Read/, 'the rest is shown')
      t.match(shown, /redacted/)
    }
    const logged: string[] = []
    const original = console.log
    console.log = (...args: unknown[]) => { logged.push(args.map(arg => inspect(arg)).join(' ')) }
    try {
      console.log(token)
      console.log({ token })
    } finally {
      console.log = original
    }
    for (const line of logged) t.notMatch(line, raw, 'console.log')
  })

  t.test('one token has one spelling: non-canonical base64url is refused', async t => {
    const fastify = await app(t)
    fastify.get('/me', { onRequest: fastify.entraAuth() }, async () => ({ ok: true }))
    const token = entra.token(API_ID)
    t.equal(await problemType(fastify, '/me', token), 200)
    const [h, p, s] = token.split('.') as [string, string, string]
    const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

    // Every other character decoding to the same bytes: same high bits, other unused low bits.
    function respellings (segment: string): string[] {
      const unused = segment.length % 4 === 2 ? 4 : segment.length % 4 === 3 ? 2 : 0
      const last = ALPHABET.indexOf(segment.at(-1) as string)
      const out: string[] = []
      for (let low = 1; low < 1 << unused; low++) out.push(segment.slice(0, -1) + ALPHABET[last | low])
      return out
    }
    const signatures = respellings(s)
    t.equal(signatures.length, 15, 'an RS256 signature (256 bytes) has 16 spellings')
    for (const other of signatures) {
      t.same(Buffer.from(other, 'base64url'), Buffer.from(s, 'base64url'), 'same bytes')
      t.equal(await problemType(fastify, '/me', `${h}.${p}.${other}`), 'auth_token_invalid')
    }
    t.equal(fastify.entraAuth.state().tokenCache.size, 1, 'no cache entry per spelling')

    // Header and payload: pad them to a length with unused bits, signed properly.
    const padded = (json: string, tail: 2 | 3): string => {
      let text = json
      while (Buffer.from(text).length % 3 !== tail - 1) text = text.replace(/}$/, ' }')
      return text
    }
    const payloadJson = padded(JSON.stringify(claims()), 2)
    const headerJson = padded(header(), 3)
    const good = signBytes(headerJson, payloadJson)
    t.equal(await problemType(fastify, '/me', good), 200, 'the canonical spelling verifies')
    const [gh, gp] = good.split('.') as [string, string]
    for (const other of respellings(gp).slice(0, 3)) {
      const input = `${gh}.${other}`
      const resigned = `${input}.${sign('RSA-SHA256', Buffer.from(input), key.privateKey).toString('base64url')}`
      t.equal(await problemType(fastify, '/me', resigned), 'auth_token_invalid', 'a payload spelled otherwise, even when signed that way')
    }
    for (const other of respellings(gh)) {
      const input = `${other}.${gp}`
      const resigned = `${input}.${sign('RSA-SHA256', Buffer.from(input), key.privateKey).toString('base64url')}`
      t.equal(await problemType(fastify, '/me', resigned), 'auth_token_invalid', 'a header spelled otherwise')
    }
  })

  t.test('header and payload must be valid UTF-8', async t => {
    const fastify = await app(t)
    fastify.get('/name', { onRequest: fastify.entraAuth() }, async (request) => ({ name: request.entraToken?.claims.name }))
    const valid = signBytes(header(), JSON.stringify(claims({ name: 'Zoë Ångström 日本' })))
    const res = await fastify.inject({ url: '/name', headers: { authorization: `Bearer ${valid}` } })
    t.same(res.json(), { name: 'Zoë Ångström 日本' }, 'UTF-8 is decoded')

    const json = Buffer.from(JSON.stringify(claims({ name: 'Zoe' })))
    const at = json.indexOf('Zoe')
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
      const bytes = Buffer.concat([json.subarray(0, at), Buffer.from(bad), json.subarray(at + 3)])
      t.equal(await problemType(fastify, '/name', signBytes(header(), bytes)), 'auth_token_invalid', `payload with bytes ${bad.map(b => b.toString(16)).join(' ')}`)
    }
    // Invalid bytes in a claim's name, and in a member of an array claim, are found too.
    for (const claim of ['"ver"', '"access_as_user"']) {
      const text = Buffer.from(JSON.stringify(claims({ roles: ['access_as_user'] })))
      const where = text.indexOf(claim) + 1
      const bytes = Buffer.concat([text.subarray(0, where), Buffer.from([0xff]), text.subarray(where + 1)])
      t.equal(await problemType(fastify, '/name', signBytes(header(), bytes)), 'auth_token_invalid', `invalid byte in ${claim}`)
    }
    // A real U+FFFD, as a JSON escape or as its UTF-8 bytes, is valid UTF-8.
    for (const [spelling, text] of [['an escape', '"\\ufffd"'], ['its bytes', '"\ufffd"']] as const) {
      const token = signBytes(header(), JSON.stringify(claims({ name: 'x' })).replace('"x"', text))
      const admitted = await fastify.inject({ url: '/name', headers: { authorization: `Bearer ${token}` } })
      t.same(admitted.json(), { name: '\ufffd' }, `U+FFFD as ${spelling} is admitted`)
    }
    const headerBytes = Buffer.from(header())
    headerBytes[headerBytes.indexOf('"JWT"') + 1] = 0xff
    t.equal(await problemType(fastify, '/name', signBytes(headerBytes, JSON.stringify(claims()))), 'auth_token_invalid', 'header with invalid UTF-8')
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(claims()))])
    t.equal(await problemType(fastify, '/name', signBytes(header(), bom)), 'auth_token_invalid', 'a byte order mark is not JSON')
  })

  t.test('size: at least 16 KiB accepted, beyond 64 KiB refused before decoding, on routes as in verify and introspect', async t => {
    const fastify = await app(t)
    fastify.get('/me', { onRequest: fastify.entraAuth() }, async () => ({ ok: true }))
    const verifier = createEntraVerifier({ clientId: API_ID, ...entra.pluginOptions() })
    t.teardown(() => verifier.close())

    const big = entra.token(API_ID, { additionalClaims: { groups: Array.from({ length: 400 }, (_, i) => `0000000${i}-0000-4000-8000-000000000000`) } })
    t.ok(big.length > 16 * 1024, `a ${big.length}-character token`)
    t.equal(await problemType(fastify, '/me', big), 200)
    t.equal((await verifier.verify(big)).raw, big, 'in verify')

    const huge = entra.token(API_ID, { additionalClaims: { padding: 'x'.repeat(64 * 1024) } })
    t.ok(huge.length > 64 * 1024)
    t.equal(await problemType(fastify, '/me', huge), 'auth_token_invalid', 'on a route')
    t.equal(await rejection(verifier.verify(huge)), 'auth_token_invalid', 'in verify')
    t.same(await verifier.introspect(huge), { active: false }, 'in introspect')
    t.equal(await rejection(fastify.entraAuth.verify(huge)), 'auth_token_invalid', "in the plugin's verify")

    // 2 MiB of nested arrays: refused for its size, whatever it contains.
    const nested = `${b64(header())}.${b64('['.repeat(1 << 20) + ']'.repeat(1 << 20))}.${'A'.repeat(342)}`
    const refusal = await verifier.verify(nested).catch((err: unknown) => err)
    t.ok(refusal instanceof EntraAuthError)
    t.equal((refusal as EntraAuthError).type, 'auth_token_invalid')
    t.match((refusal as EntraAuthError).detail, /longer than/)
  })

  t.test('claims are own properties only: a polluted Object.prototype grants nothing', async t => {
    const fastify = await app(t, { allowedTenants: [entra.tenantId] })
    fastify.get('/admin', { onRequest: fastify.entraAuth(['Admin.All']) }, async () => ({ ok: true }))
    fastify.get('/me', { onRequest: fastify.entraAuth() }, async (request) => ({ appOnly: request.entraToken?.isAppOnly, tenant: request.entraToken?.tenantId ?? null }))
    const verifier = createEntraVerifier({ clientId: API_ID, allowedTenants: [entra.tenantId], ...entra.pluginOptions() })
    t.teardown(() => verifier.close())

    const proto = Object.prototype as Record<string, unknown>
    async function polluted<T> (name: string, value: unknown, run: () => Promise<T>): Promise<T> {
      proto[name] = value
      try {
        return await run()
      } finally {
        delete proto[name]
      }
    }
    t.teardown(() => { for (const name of ['roles', 'scp', 'tid', 'idtyp']) delete proto[name] })

    const plain = entra.token(API_ID, { scp: 'User.Read', roles: false })
    t.equal(await polluted('roles', ['Admin.All'], () => problemType(fastify, '/admin', plain)), 'auth_token_insufficient_scopes', 'roles')
    const noScp = entra.token(API_ID, { scp: false, roles: false })
    t.equal(await polluted('scp', 'Admin.All', () => problemType(fastify, '/admin', noScp)), 'auth_token_insufficient_scopes', 'scp')
    const noTid = entra.token(API_ID, { tid: false })
    t.equal(await polluted('tid', entra.tenantId, () => problemType(fastify, '/me', noTid)), 'auth_token_issuer_untrusted', 'tid against allowedTenants')
    t.equal(await polluted('tid', entra.tenantId, () => rejection(verifier.verify(noTid))), 'auth_token_issuer_untrusted', 'tid in verify')
    const user = entra.token(API_ID, { idtyp: false })
    const res = await polluted('idtyp', 'app', () => fastify.inject({ url: '/me', headers: { authorization: `Bearer ${user}` } }))
    t.same(res.json(), { appOnly: false, tenant: entra.tenantId }, 'idtyp')
    const other = entra.token(API_ID, { tid: OTHER_TENANT })
    t.equal(await polluted('tid', entra.tenantId, () => problemType(fastify, '/me', other)), 'auth_token_issuer_untrusted')
    t.notOk('roles' in Object.prototype, 'restored')
  })

  t.test('the problem registry is deeply frozen', async t => {
    t.ok(Object.isFrozen(problems))
    for (const [type, definition] of Object.entries(problems)) t.ok(Object.isFrozen(definition), type)
    t.throws(() => { (problems as Record<string, unknown>).auth_token_expired = { status: 200 } })
    t.throws(() => { (problems.auth_token_expired as { status: number }).status = 200 })
    t.equal(new EntraAuthError('auth_token_expired').status, 401)
  })
})
