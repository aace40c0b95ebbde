import type { IncomingHttpHeaders } from 'node:http'
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'
import { Agent, Dispatcher, request } from 'undici'

/** Loopback (RFC 6890: 127.0.0.0/8, ::1) or `localhost`; a URL's hostname (`[::1]`) or a bare host. */
export function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** Why fetching an identity-provider document failed; logged, never sent to clients. */
export class FetchFailure extends Error {
  override name = 'FetchFailure'
}

/**
 * A connection pool whose timeouts really apply: get-jwks' own `timeout` fetch option is ignored
 * by `fetch`, so the deadline lives here (connect/headers/body) and in each fetch's own signal.
 */
export function createAgent (timeout: number): Agent {
  return new Agent({ connectTimeout: timeout, headersTimeout: timeout, bodyTimeout: timeout, connections: 4 })
}

/** What a guarded dispatcher enforces on every response it carries. */
export interface GuardOptions {
  /** The only origin requests may go to (the discovery URL's). */
  origin: string
  /** Largest response body accepted. */
  maxBytes: number
  /** Called with each complete response (body decoded), so a layer above can read what a library fetched. */
  onResponse?: (url: string, statusCode: number, body: Buffer) => void
  /** Called when the guard refuses a response (libraries above may report it as something else). */
  onRefused?: (url: string, failure: FetchFailure) => void
}

/** Forwards to an inner dispatcher; `compose()` puts the guard in front of it. */
class Delegate extends Dispatcher {
  readonly #inner: Dispatcher
  constructor (inner: Dispatcher) {
    super()
    this.#inner = inner
  }

  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#inner.dispatch(opts, handler)
  }

  override close (): Promise<void> {
    return this.#inner.close()
  }

  override destroy (): Promise<void> {
    return this.#inner.destroy()
  }
}

function decompress (body: Buffer, encoding: string | undefined, maxBytes: number): Buffer {
  const options = { maxOutputLength: maxBytes }
  switch (encoding?.trim().toLowerCase()) {
    case undefined: case '': case 'identity': return body
    case 'gzip': case 'x-gzip': return gunzipSync(body, options)
    case 'deflate': return inflateSync(body, options)
    case 'br': return brotliDecompressSync(body, options)
    default: throw new FetchFailure(`unsupported content-encoding '${encoding}'`)
  }
}

/** Wraps the app's (or our) handler: refuses redirects and other origins, caps the size, reports the body. */
class GuardHandler implements Dispatcher.DispatchHandler {
  readonly #inner: Dispatcher.DispatchHandler
  readonly #guard: GuardOptions
  readonly #url: string
  #chunks: Buffer[] | null = null
  #size = 0
  #encoding: string | undefined
  #statusCode = 0

  constructor (inner: Dispatcher.DispatchHandler, guard: GuardOptions, url: string) {
    this.#inner = inner
    this.#guard = guard
    this.#url = url
  }

  #refuse (controller: Dispatcher.DispatchController, failure: FetchFailure): void {
    this.#guard.onRefused?.(this.#url, failure)
    controller.abort(failure)
  }

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    // undici's redirect interceptor reports the URLs it followed as `context.history`: a dispatcher
    // that follows redirects despite `maxRedirections: 0` is still caught here.
    const history = (context as { history?: unknown[] } | undefined)?.history
    if (Array.isArray(history) && history.length > 0) {
      this.#refuse(controller, new FetchFailure('the identity provider redirected; redirects are refused'))
      return
    }
    const origin = new URL(this.#url).origin
    if (origin !== this.#guard.origin) {
      this.#refuse(controller, new FetchFailure(`request to ${origin} refused: only ${this.#guard.origin} is trusted`))
      return
    }
    this.#inner.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Dispatcher.DispatchController, _statusCode: number, _headers: IncomingHttpHeaders, socket: import('node:stream').Duplex): void {
    socket.destroy()
    this.#refuse(controller, new FetchFailure('unexpected protocol upgrade'))
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode >= 300 && statusCode < 400) {
      // Keys must come from the discovery URL's origin (contract): a 3xx could point anywhere.
      this.#refuse(controller, new FetchFailure(`HTTP status ${statusCode} (redirects are refused)`))
      return
    }
    const length = Number(headers['content-length'])
    if (Number.isFinite(length) && length > this.#guard.maxBytes) {
      this.#refuse(controller, new FetchFailure(`response larger than ${this.#guard.maxBytes} bytes`))
      return
    }
    if (this.#guard.onResponse !== undefined) {
      this.#statusCode = statusCode
      this.#chunks = []
      const encoding = headers['content-encoding']
      this.#encoding = Array.isArray(encoding) ? encoding.join(',') : encoding
    }
    this.#inner.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length
    if (this.#size > this.#guard.maxBytes) {
      this.#refuse(controller, new FetchFailure(`response larger than ${this.#guard.maxBytes} bytes`))
      return
    }
    this.#chunks?.push(chunk)
    this.#inner.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.#chunks !== null && this.#guard.onResponse !== undefined) {
      try {
        this.#guard.onResponse(this.#url, this.#statusCode, decompress(Buffer.concat(this.#chunks), this.#encoding, this.#guard.maxBytes))
      } catch (err) {
        const failure = err instanceof FetchFailure ? err : new FetchFailure(`response could not be decoded: ${(err as Error).message}`)
        this.#guard.onRefused?.(this.#url, failure)
        this.#inner.onResponseError?.(controller, failure)
        return
      }
    }
    this.#inner.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Dispatcher.DispatchController, error: Error): void {
    this.#inner.onResponseError?.(controller, error)
  }
}

/**
 * A dispatcher for identity-provider fetches, in front of the app's dispatcher (or our own
 * agent). Whatever the dispatcher underneath does, every request through it:
 * - goes to `origin` only, and never follows a redirect: `maxRedirections: 0` turns off undici's
 *   redirect interceptor per request, and a 3xx, or a response that arrives after a redirect,
 *   fails the fetch;
 * - is capped at `maxBytes`;
 * - reports its response to `onResponse`, so the key layer learns the whole JWKS that get-jwks fetched.
 * Built with undici's public interceptor API (`Dispatcher.compose`).
 */
export function guardDispatcher (inner: Dispatcher, guard: GuardOptions): Dispatcher {
  const interceptor: Dispatcher.DispatcherComposeInterceptor = dispatch => (opts, handler) => {
    const url = new URL(opts.path, opts.origin)
    return dispatch({ ...opts, maxRedirections: 0 } as Dispatcher.DispatchOptions, new GuardHandler(handler, guard, url.href))
  }
  return new Delegate(inner).compose(interceptor)
}

/** Refuses a body that is not JSON, whatever its content type says (Entra and test servers disagree). */
export function parseJson (body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new FetchFailure(`${what} is not JSON`)
  }
}

/** Describes a failed fetch for logs and `state()`; `fetch` hides the reason in `cause`. */
export function failureReason (err: unknown, timeout: number): string {
  let cause: unknown = err
  for (let depth = 0; depth < 4 && cause instanceof Error; depth++) {
    if (cause instanceof FetchFailure) return cause.message
    if (cause.name === 'TimeoutError' || cause.name === 'AbortError') return `no complete response within ${timeout} ms`
    cause = cause.cause
  }
  return err instanceof Error ? err.message : String(err)
}

/**
 * GETs a JSON document through a guarded dispatcher with one deadline for the whole response.
 */
export async function fetchJson (url: URL, dispatcher: Dispatcher, timeout: number, what: string): Promise<unknown> {
  // A fresh signal per fetch: a shared one would abort every later fetch once fired.
  const signal = AbortSignal.timeout(timeout)
  try {
    const { statusCode, body } = await request(url, { method: 'GET', dispatcher, signal, headers: { accept: 'application/json', 'accept-encoding': 'identity' } })
    if (statusCode < 200 || statusCode > 299) {
      body.dump().catch(() => {})
      throw new FetchFailure(`${what}: HTTP status ${statusCode}`)
    }
    return parseJson(Buffer.from(await body.arrayBuffer()), what)
  } catch (err) {
    if (err instanceof FetchFailure) throw err
    throw new FetchFailure(`${what}: ${failureReason(err, timeout)}`, { cause: err })
  }
}
