/**
 * MSAL Node against the in-process fake Entra: MSAL's documented `system.networkClient` sends
 * its requests through the fake's undici dispatcher, so a test needs no socket. Client
 * credentials, then a web app's sign-in (authorization code with PKCE, ID token, client_info
 * account) and a silent refresh, each token accepted by the plugin through `app.inject`.
 */
import { createHash, randomBytes } from 'node:crypto'
import { ConfidentialClientApplication } from '@azure/msal-node'
import t from 'tap'
import { FakeEntra } from '../src/testing/index.js'
import { bearer, entraApp } from './helpers/index.js'
import { msalNetworkClient } from './helpers/token-endpoint.js'

const API = '00000000-0000-4000-8000-0000000000a1'
const WEB = '00000000-0000-4000-8000-0000000000b2'
const REDIRECT = 'http://localhost:3000/auth/callback'

function msal (entra: FakeEntra, clientId: string, clientSecret: string): ConfidentialClientApplication {
  return new ConfidentialClientApplication({
    // The fake's default origin is Entra's own, so the authority is the real one: nothing leaves the process.
    auth: { clientId, clientSecret, authority: entra.authority },
    system: { networkClient: msalNetworkClient(entra) }
  })
}

t.test('client credentials with MSAL Node, in process', async t => {
  const entra = new FakeEntra({ apis: [{ clientId: API, appRoles: ['Reports.Read.All'] }] })
  const app = await entraApp({ clientId: API, ...entra.pluginOptions() })
  app.get('/reports', { onRequest: app.entraAuth({ roles: ['Reports.Read.All'] }) }, async () => ({ ok: true }))
  t.teardown(async () => { await app.close(); await entra.close() })
  const result = await msal(entra, 'daemon', 'secret').acquireTokenByClientCredential({ scopes: [`api://${API}/.default`] })
  t.equal((await app.inject({ url: '/reports', headers: bearer(result?.accessToken ?? '') })).statusCode, 200)
  t.equal(entra.oauthRequests.token, 1)
})

t.test('a web app signs the user in with MSAL Node (auth code + PKCE), then refreshes silently', async t => {
  const entra = new FakeEntra({
    autoSignIn: true,
    apis: [{ clientId: API, scopes: ['Files.Read'] }],
    clients: [{ clientId: WEB, secret: 'web-secret', redirectUris: [REDIRECT] }],
    user: { name: 'Ada Lovelace', username: 'ada@contoso.example' }
  })
  const app = await entraApp({ clientId: API, ...entra.pluginOptions() })
  app.get('/files', { onRequest: app.entraAuth({ scopes: ['Files.Read'] }) }, async request => ({ user: request.entraToken?.claims.name }))
  t.teardown(async () => { await app.close(); await entra.close() })

  const web = msal(entra, WEB, 'web-secret')
  const verifier = randomBytes(32).toString('base64url')
  const scopes = [`api://${API}/Files.Read`]
  const url = new URL(await web.getAuthCodeUrl({
    scopes,
    redirectUri: REDIRECT,
    codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
    codeChallengeMethod: 'S256',
    state: 'state-1',
    nonce: 'nonce-1'
  }))
  t.equal(`${url.origin}${url.pathname}`, entra.authorizationEndpoint)
  // The browser's part: follow the authorize URL; the fake signs the test user in and redirects back.
  const signIn = entra.handle({ method: 'GET', url: url.pathname + url.search, headers: {}, body: '' })
  t.equal(signIn.status, 302)
  const callback = new URL(signIn.headers.location as string)
  t.equal(callback.searchParams.get('state'), 'state-1')

  const result = await web.acquireTokenByCode({ code: callback.searchParams.get('code') as string, scopes, redirectUri: REDIRECT, codeVerifier: verifier, state: 'state-1', nonce: 'nonce-1' })
  t.match(result.account, { username: 'ada@contoso.example', name: 'Ada Lovelace', tenantId: entra.tenantId, homeAccountId: `${result.account?.localAccountId ?? ''}.${entra.tenantId}` }, "MSAL's account comes from client_info and the ID token")
  t.equal((result.idTokenClaims as { nonce?: string }).nonce, 'nonce-1', 'the nonce of the authorization request is in the ID token')
  const files = await app.inject({ url: '/files', headers: bearer(result.accessToken) })
  t.equal(files.statusCode, 200)
  t.same(files.json(), { user: 'Ada Lovelace' })

  const refreshed = await web.acquireTokenSilent({ account: result.account!, scopes, forceRefresh: true })
  t.not(refreshed.accessToken, result.accessToken, 'a new access token from the refresh token')
  t.equal((await app.inject({ url: '/files', headers: bearer(refreshed.accessToken) })).statusCode, 200)
  t.equal(entra.oauthRequests.token, 2, 'one code redemption, one refresh')
})
