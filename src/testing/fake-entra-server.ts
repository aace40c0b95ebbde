import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { isLoopbackHost } from '../core/http.js'
import { FakeEntra, FAKE_TENANT_ID, type FakeEntraOptions } from './fake-entra.js'
import { checkApis } from './grants.js'

/** Options of {@link startFakeEntraServer}. */
export interface FakeEntraServerOptions extends Omit<FakeEntraOptions, 'origin' | 'issuer' | 'tenant'> {
  /** Port to listen on. Default 0: any free port. */
  port?: number
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string
  /** Listen on an address other than loopback (the fake signs anyone in). Default `false`. */
  allowNonLoopback?: boolean
  /** The `issuer` of discovery and tokens. Default Entra's real v2.0 issuer for the tenant. */
  issuer?: string
  /** Where the start-up notice goes. Default standard error; `null` for none. */
  log?: ((line: string) => void) | null
}

/** A running fake Entra on loopback. */
export interface FakeEntraServer {
  /** The fake behind the server: keys, registrations, counters, token presets. */
  readonly entra: FakeEntra
  /** `http://127.0.0.1:{port}` */
  readonly origin: string
  /** `{origin}/{tenant id}`: the authority of OAuth clients. */
  readonly authority: string
  /** The OpenID configuration document's URL: the plugin's `oidcEndpoint`. */
  readonly oidcEndpoint: string
  readonly tokenEndpoint: string
  close: () => Promise<void>
}

async function readBody (request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > 64 * 1024) throw new RangeError('request body too large')
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

async function answer (entra: FakeEntra, request: IncomingMessage, response: ServerResponse): Promise<void> {
  let body: string
  try {
    body = await readBody(request)
  } catch (err) {
    if (!(err instanceof RangeError)) throw err
    response.writeHead(413, { 'content-type': 'text/plain', connection: 'close' }).end('Payload Too Large')
    return
  }
  const headers: Record<string, string | undefined> = {}
  for (const [name, value] of Object.entries(request.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : value
  const reply = entra.handle({ method: request.method ?? 'GET', url: request.url ?? '/', headers, body, ...(request.socket.remoteAddress === undefined ? {} : { remoteAddress: request.socket.remoteAddress }) })
  response.writeHead(reply.status, reply.headers).end(reply.body)
}

/**
 * Starts a fake Entra ID on loopback HTTP, so that real clients (MSAL, curl) get tokens the plugin accepts.
 * @example
 * ```ts
 * import { startFakeEntraServer } from 'fastify-entra-auth/testing'
 * const server = await startFakeEntraServer({ apis: [{ clientId }] })
 * await app.register(entraAuth, { clientId, oidcEndpoint: server.oidcEndpoint })
 * // clients get tokens from server.tokenEndpoint; then:
 * await server.close()
 * ```
 */
export async function startFakeEntraServer (options: FakeEntraServerOptions = {}): Promise<FakeEntraServer> {
  const { port = 0, host = '127.0.0.1', allowNonLoopback = false, issuer, log, ...entraOptions } = options
  if (!isLoopbackHost(host) && !allowNonLoopback) {
    throw new TypeError(`startFakeEntraServer: host '${host}' is not a loopback address. The fake Entra signs anyone in and accepts any secret; set allowNonLoopback: true to listen there anyway.`)
  }
  checkApis('startFakeEntraServer', entraOptions.apis)
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  const address = server.address() as AddressInfo
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const tenantId = entraOptions.tenantId ?? FAKE_TENANT_ID
  const entra = new FakeEntra({
    ...entraOptions,
    tenantId,
    origin: `http://${hostPart}:${address.port}`,
    issuer: issuer ?? `https://login.microsoftonline.com/${tenantId}/v2.0`
  })

  server.on('request', (request, response) => {
    // Nothing a client sends may become an unhandled rejection: that would end the process.
    answer(entra, request, response).catch(() => { response.destroy() })
  })

  const notice = log === undefined ? (line: string) => { process.stderr.write(`${line}\n`) } : log
  notice?.(`fake Entra ID on ${entra.origin}: for development and tests only. It signs in a test user without a password and accepts ${entraOptions.clients === undefined ? 'any client ID and secret' : 'the configured clients'}; its tokens are trusted only by APIs configured with its discovery URL.`)

  return {
    entra,
    origin: entra.origin,
    authority: entra.authority,
    oidcEndpoint: entra.oidcEndpoint,
    tokenEndpoint: entra.tokenEndpoint,
    async close () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(() => resolve(undefined)))
      await entra.close()
    }
  }
}
