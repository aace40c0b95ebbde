/** Request-side helpers: the bearer header, and a dispatcher that records what the plugin fetched. */
import { Dispatcher } from 'undici'

/** `{ authorization: 'Bearer <token>' }`, to spread into `inject`'s headers. */
export function bearer (token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` }
}

/**
 * Wraps a dispatcher (e.g. a FakeEntra's) and records the URL of every request the plugin makes,
 * so tests can see exactly which discovery and JWKS URLs were fetched.
 */
export class RecordingDispatcher extends Dispatcher {
  readonly urls: string[] = []
  readonly #inner: Dispatcher

  constructor (inner: Dispatcher) {
    super()
    this.#inner = inner
  }

  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.urls.push(new URL(opts.path, opts.origin).href)
    return this.#inner.dispatch(opts, handler)
  }

  override async close (): Promise<void> {
    await this.#inner.close()
  }

  override async destroy (): Promise<void> {
    await this.#inner.destroy()
  }
}
