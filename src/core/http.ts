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
 * A refresh that failed because a library (get-jwks, @fastify/jwt, Fastify) failed to load or to
 * work: an outage like a failed fetch, but logged at error level with its cause.
 */
export class LibraryFailure extends FetchFailure {
  override name = 'LibraryFailure'
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

/** The content codings the guard decodes (RFC 9110 §8.4.1); any other is refused before the body. */
const DECODERS: Readonly<Record<string, ((body: Buffer, options: { maxOutputLength: number }) => Buffer) | null>> = {
  '': null,
  identity: null,
  gzip: gunzipSync,
  'x-gzip': gunzipSync,
  deflate: inflateSync,
  br: brotliDecompressSync
}

function decoderOf (encoding: string | undefined): ((body: Buffer, options: { maxOutputLength: number }) => Buffer) | null | undefined {
  const name = (encoding ?? '').trim().toLowerCase()
  return Object.hasOwn(DECODERS, name) ? DECODERS[name] : undefined
}

/**
 * Wraps the library's handler: refuses redirects and other origins, caps the size, and hands the
 * handler only a complete, decoded body. The response is held back until it has ended and decoded
 * within `maxBytes`, then passed on without `content-encoding`: whatever fails (an unknown coding, a
 * corrupt or oversized compressed body) fails the request before the handler saw a response, which
 * every `fetch` reports (Node 20's `fetch` can lose one that fails after the headers were passed on).
 */
class GuardHandler implements Dispatcher.DispatchHandler {
  readonly #inner: Dispatcher.DispatchHandler
  readonly #guard: GuardOptions
  readonly #url: string
  #chunks: Buffer[] = []
  #size = 0
  #decode: ((body: Buffer, options: { maxOutputLength: number }) => Buffer) | null = null
  #statusCode = 0
  #statusMessage: string | undefined
  #headers: IncomingHttpHeaders = {}
  #done = false

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
    const raw = headers['content-encoding']
    const encoding = Array.isArray(raw) ? raw.join(',') : raw
    const decode = decoderOf(encoding)
    if (decode === undefined) {
      this.#refuse(controller, new FetchFailure(`unsupported content-encoding '${encoding ?? ''}'`))
      return
    }
    this.#decode = decode
    this.#statusCode = statusCode
    this.#statusMessage = statusMessage
    this.#headers = headers
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length
    if (this.#size > this.#guard.maxBytes) {
      this.#refuse(controller, new FetchFailure(`response larger than ${this.#guard.maxBytes} bytes`))
      return
    }
    this.#chunks.push(chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    let body: Buffer = Buffer.concat(this.#chunks)
    this.#chunks = []
    try {
      if (this.#decode !== null) body = this.#decode(body, { maxOutputLength: this.#guard.maxBytes })
    } catch (err) {
      const failure = new FetchFailure(`response could not be decoded within ${this.#guard.maxBytes} bytes: ${(err as Error).message}`)
      this.#guard.onRefused?.(this.#url, failure)
      this.onResponseError(controller, failure)
      return
    }
    this.#guard.onResponse?.(this.#url, this.#statusCode, body)
    const { 'content-encoding': _encoding, 'content-length': _length, ...headers } = this.#headers
    this.#done = true
    this.#inner.onResponseStart?.(controller, this.#statusCode, { ...headers, 'content-length': String(body.length) }, this.#statusMessage)
    if (body.length > 0) this.#inner.onResponseData?.(controller, body)
    this.#inner.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#done) return
    this.#done = true
    this.#inner.onResponseError?.(controller, error)
  }
}

/**
 * A dispatcher for identity-provider fetches, in front of the app's dispatcher (or our own
 * agent). Whatever the dispatcher underneath does, every request through it:
 * - goes to `origin` only, and never follows a redirect: `maxRedirections: 0` turns off undici's
 *   redirect interceptor per request, and a 3xx, or a response that arrives after a redirect,
 *   fails the fetch;
 * - is capped at `maxBytes`, decoded by the guard (gzip, deflate, br; any other coding is refused)
 *   within `maxBytes`, and passed on only once complete and decoded;
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

/** The controller of a response served from memory: it only records what the handler asks. */
class MemoryController implements Dispatcher.DispatchController {
  aborted = false
  paused = false
  reason: Error | null = null
  abort (reason: Error): void {
    this.aborted = true
    this.reason = reason
  }

  pause (): void { this.paused = true }
  resume (): void { this.paused = false }
}

/**
 * `dispatcher`, except that a request whose URL `answer` knows is answered from memory (200, JSON),
 * on a later tick, without a connection. The key layer uses it so that get-jwks resolves every
 * `kid` of one refresh against the one document fetched for it (see core/jwks.ts).
 */
export function answeringFromMemory (dispatcher: Dispatcher, answer: (url: string) => Buffer | undefined): Dispatcher {
  return dispatcher.compose(dispatch => (opts, handler) => {
    const body = answer(new URL(opts.path, opts.origin).href)
    if (body === undefined) return dispatch(opts, handler)
    setImmediate(() => {
      const controller = new MemoryController()
      const failed = (): boolean => {
        if (controller.aborted) handler.onResponseError?.(controller, controller.reason ?? new Error('aborted'))
        return controller.aborted
      }
      handler.onRequestStart?.(controller, {})
      if (failed()) return
      handler.onResponseStart?.(controller, 200, { 'content-type': 'application/json', 'content-length': String(body.length) }, 'OK')
      if (failed()) return
      handler.onResponseData?.(controller, body)
      if (failed()) return
      handler.onResponseEnd?.(controller, {})
    })
    return true
  })
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
 * Runs `run` with one deadline: at `timeout` ms its signal aborts and the returned promise rejects
 * with a `FetchFailure`, whether or not the work underneath noticed the abort (a `fetch` whose body
 * failed in an unexpected way may never settle). The timer is cleared when `run` settles first.
 */
export async function withDeadline<T> (timeout: number, what: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((resolve, reject) => {
    timer = setTimeout(() => {
      const failure = new FetchFailure(`${what}: no complete response within ${timeout} ms`)
      controller.abort(failure)
      reject(failure)
    }, timeout)
    timer.unref()
  })
  try {
    return await Promise.race([run(controller.signal), deadline])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * GETs a JSON document through a guarded dispatcher with one deadline for the whole response.
 */
export async function fetchJson (url: URL, dispatcher: Dispatcher, timeout: number, what: string): Promise<unknown> {
  return await withDeadline(timeout, what, async signal => {
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
  })
}
