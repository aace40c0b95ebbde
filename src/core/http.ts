import type { IncomingHttpHeaders } from 'node:http'
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'
import { Agent, Dispatcher, request } from 'undici'

export function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

export class FetchFailure extends Error {
  override name = 'FetchFailure'
}

export class LibraryFailure extends FetchFailure {
  override name = 'LibraryFailure'
}

/** `fetch` ignores get-jwks' `timeout` option, so the deadline lives here and in each fetch's signal. */
export function createAgent (timeout: number): Agent {
  return new Agent({ connectTimeout: timeout, headersTimeout: timeout, bodyTimeout: timeout, connections: 4 })
}

export interface GuardOptions {
  origin: string
  maxBytes: number
  onResponse?: (url: string, statusCode: number, body: Buffer) => void
  onRefused?: (url: string, failure: FetchFailure) => void
}

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

/** RFC 9110 §8.4.1 codings; any other is refused before the body. */
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

/** Holds the response back until complete and decoded: Node 20's `fetch` can lose a failure after the headers. */
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
    // Catches a dispatcher that follows redirects despite `maxRedirections: 0`.
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

/** Same origin, no redirects, `maxBytes`, whatever the dispatcher underneath does (docs/architecture.md). */
export function guardDispatcher (inner: Dispatcher, guard: GuardOptions): Dispatcher {
  const interceptor: Dispatcher.DispatcherComposeInterceptor = dispatch => (opts, handler) => {
    const url = new URL(opts.path, opts.origin)
    return dispatch({ ...opts, maxRedirections: 0 } as Dispatcher.DispatchOptions, new GuardHandler(handler, guard, url.href))
  }
  return new Delegate(inner).compose(interceptor)
}

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

/** So that get-jwks resolves every `kid` of one refresh against the one document fetched for it. */
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

export function parseJson (body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new FetchFailure(`${what} is not JSON`)
  }
}

export function failureReason (err: unknown, timeout: number): string {
  let cause: unknown = err
  for (let depth = 0; depth < 4 && cause instanceof Error; depth++) {
    if (cause instanceof FetchFailure) return cause.message
    if (cause.name === 'TimeoutError' || cause.name === 'AbortError') return `no complete response within ${timeout} ms`
    cause = cause.cause
  }
  return err instanceof Error ? err.message : String(err)
}

/** Rejects at `timeout` even if the work ignores the abort (a `fetch` may never settle). */
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
