/**
 * No request stops the fake Entra's loopback server: malformed request lines over raw sockets,
 * then seeded random requests to every endpoint. Each gets an answer below 500, and the server
 * keeps serving discovery afterwards.
 */
import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { startFakeEntraServer, type FakeEntraServer } from '../src/testing/index.js'

const API = '00000000-0000-4000-8000-0000000000a1'

/** Sends `raw` on a new connection and resolves with everything the server wrote before closing. */
function exchange (server: FakeEntraServer, raw: string | Buffer): Promise<string> {
  const { hostname, port } = new URL(server.origin)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) })
    const chunks: Buffer[] = []
    // A safety net so that a stuck exchange fails the test instead of waiting for tap's timeout.
    socket.setTimeout(15_000, () => { socket.destroy(new Error(`no answer to ${JSON.stringify(String(raw).slice(0, 200))}`)) })
    socket.on('data', chunk => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => { resolve(Buffer.concat(chunks).toString('latin1')) })
    socket.end(raw)
  })
}

function statusOf (answer: string): number {
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(answer)
  return match === null ? 0 : Number(match[1])
}

/** A request with `connection: close` and a correct `content-length`. */
function http (method: string, target: string, headers: Record<string, string>, body = ''): Buffer {
  const bytes = Buffer.from(body, 'latin1')
  const lines = [`${method} ${target} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
  if (bytes.length > 0 || method === 'POST') lines.push(`content-length: ${bytes.length}`)
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), bytes])
}

/** mulberry32: a small seeded generator, so that a failing case can be replayed. */
function random (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = Math.imul(state ^ (state >>> 15), 1 | state)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

let rejections = 0
const onRejection = (): void => { rejections++ }
process.on('unhandledRejection', onRejection)
t.teardown(() => { process.off('unhandledRejection', onRejection) })

async function stillServes (t: Test, server: FakeEntraServer): Promise<void> {
  const discovery = await fetch(server.oidcEndpoint)
  t.equal(discovery.status, 200, 'the server still serves discovery')
  await discovery.body?.cancel()
  t.equal(rejections, 0, 'no unhandled rejection')
}

t.test('the two reported triggers get 400 and the server keeps serving', async t => {
  const server = await startFakeEntraServer({ apis: [{ clientId: API }], log: null })
  t.teardown(() => server.close())
  const token = new URL(server.tokenEndpoint).pathname
  // A Basic credential that decodes to a malformed percent-escape (URIError in decodeURIComponent).
  const basic = `Basic ${Buffer.from('%E0%A4%A:x').toString('base64')}`
  const form = new URLSearchParams({ grant_type: 'client_credentials', scope: `api://${API}/.default` }).toString()
  const badBasic = await exchange(server, http('POST', token, { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, form))
  t.equal(statusOf(badBasic), 401, 'malformed Basic credentials: invalid_client')
  t.match(badBasic, /"error":"invalid_client"/)
  // The request target that `new URL` refuses (TypeError).
  const badTarget = await exchange(server, 'GET http://[ HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n')
  t.equal(statusOf(badTarget), 400, 'a request target new URL refuses: 400')
  t.match(badTarget, /"error":"invalid_request"/)
  await stillServes(t, server)
})

t.test('malformed request lines over raw sockets', async t => {
  const server = await startFakeEntraServer({ apis: [{ clientId: API }], log: null })
  t.teardown(() => server.close())
  const tenant = server.entra.tenantId
  const targets = [
    'http://[', 'http://[::1', '//[', 'http://', 'http:', '%', '/%E0%A4%A', `/${tenant}/oauth2/v2.0/authorize?%E0%A4%A=%ZZ`,
    '*', 'http://a:b@[/', `http://127.0.0.1:99999/${tenant}/oauth2/v2.0/token`, `/${tenant}/oauth2/v2.0/token/../token`,
    `/${tenant}/oauth2/v2.0/authorize?redirect_uri=http://[&client_id=x&response_type=code`,
    `/${tenant}/oauth2/v2.0/authorize?client_id=x&redirect_uri=https://a.example/&response_type=code&code_challenge_method=S256&code_challenge=${'a'.repeat(43)}&scope=%E0`,
    `/%2e%2e/${tenant}/v2.0/.well-known/openid-configuration`, `/${'a'.repeat(8000)}`
  ]
  for (const target of targets) {
    for (const method of ['GET', 'POST', 'OPTIONS', 'PUT', 'DELETE']) {
      const status = statusOf(await exchange(server, http(method, target, { 'content-type': 'application/x-www-form-urlencoded' }, method === 'POST' ? 'grant_type=%E0' : '')))
      t.ok(status >= 200 && status < 500, `${method} ${target.slice(0, 80)}: ${status}`)
    }
  }
  for (const line of ['GET\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', '\x00\x01\x02\r\n\r\n', 'GET /\x7f HTTP/1.1\r\n\r\n', 'POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n', 'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n']) {
    const status = statusOf(await exchange(server, line))
    t.ok(status === 0 || (status >= 400 && status < 500), `${JSON.stringify(line)}: ${status} (0: closed without an answer)`)
  }
  await stillServes(t, server)
})

t.test('seeded random requests to every endpoint get answers below 500', async t => {
  const seed = Number(process.env.FUZZ_SEED ?? 0x5eed)
  t.comment(`seed ${seed} (FUZZ_SEED replays it)`)
  const next = random(seed)
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T
  const junk = (length: number): string => Array.from({ length }, () => String.fromCharCode(Math.floor(next() * 256))).join('')
  const server = await startFakeEntraServer({
    apis: [{ clientId: API, scopes: ['Files.Read'], appRoles: ['Reports.Read.All'] }],
    clients: [{ clientId: 'daemon', secret: 's3cret' }, { clientId: 'spa', redirectUris: ['http://localhost/cb'] }],
    log: null
  })
  t.teardown(() => server.close())
  const tenant = server.entra.tenantId
  const paths = [`/${tenant}/oauth2/v2.0/token`, `/${tenant}/oauth2/v2.0/authorize`, `/${tenant}/v2.0/.well-known/openid-configuration`, `/${tenant}/discovery/v2.0/keys`, '/other/oauth2/v2.0/token', '/']
  const values = ['', 'daemon', 'spa', 's3cret', '%', '%E0%A4%A', '%ZZ', 'client_credentials', 'authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'on_behalf_of',
    `api://${API}/.default`, `api://${API}/Files.Read`, `${API}/.default openid offline_access`, 'http://localhost/cb', 'http://[', 'S256', 'a'.repeat(43), 'eyJhbGciOiJSUzI1NiJ9.e30.x']
  const names = ['grant_type', 'client_id', 'client_secret', 'scope', 'code', 'redirect_uri', 'code_verifier', 'refresh_token', 'assertion', 'requested_token_use', 'response_type', 'code_challenge', 'code_challenge_method', 'state', 'nonce', 'response_mode', 'client_info']
  // Header values may carry any byte but controls (RFC 9110 §5.5: obs-text included).
  const headerSafe = (value: string): string => Array.from(value).filter(c => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f).join('')
  const field = (): string => `${pick(names)}=${next() < 0.2 ? encodeURIComponent(junk(4)) : next() < 0.5 ? pick(values) : encodeURIComponent(pick(values))}`
  const statuses = new Map<number, number>()
  for (let i = 0; i < 300; i++) {
    const method = pick(['GET', 'POST', 'POST', 'OPTIONS', 'HEAD', 'PATCH'])
    const query = next() < 0.5 ? `?${Array.from({ length: Math.floor(next() * 8) }, field).join('&')}` : ''
    const body = next() < 0.7 ? Array.from({ length: Math.floor(next() * 8) }, field).join('&') : junk(Math.floor(next() * 64))
    const headers: Record<string, string> = {}
    if (next() < 0.8) headers['content-type'] = pick(['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-8', 'application/json', 'text/plain', ''])
    if (next() < 0.4) {
      const credentials = next() < 0.5 ? `${pick(values)}:${pick(values)}` : junk(12)
      headers.authorization = pick([`Basic ${Buffer.from(credentials, 'latin1').toString('base64')}`, `Basic ${headerSafe(junk(6))}`, 'Basic', `Bearer ${pick(values)}`])
    }
    if (next() < 0.3) headers['access-control-request-headers'] = pick(['authorization', 'content-type, authorization', headerSafe(junk(8))])
    if (next() < 0.3) headers['client-request-id'] = pick(['abc-123', headerSafe(junk(10))])
    const target = `${pick(paths)}${query}`
    const status = statusOf(await exchange(server, http(method, target, headers, method === 'GET' || method === 'HEAD' ? '' : body)))
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    if (!(status >= 200 && status < 500)) t.fail(`${method} ${target} → ${status}`, { headers, body })
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`)
  t.ok((statuses.get(200) ?? 0) > 0, 'some requests are answered 200')
  t.ok([400, 401].some(status => (statuses.get(status) ?? 0) > 0), 'and some are refused')
  await stillServes(t, server)
})
