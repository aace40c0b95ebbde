import { LRUCache } from 'lru-cache'
import type { SigningKey } from './keys.js'
import type { EntraToken } from './token.js'

interface Entry {
  readonly token: EntraToken
  readonly key: SigningKey
}

/**
 * Verified tokens by their exact string, so a token seen before skips the RSA verification and
 * claim checks. Bounded (LRU), and an entry never outlives the token's `exp`. Callers still judge
 * `nbf`/`exp` against the configured clock and the key's presence on every hit.
 */
export class TokenCache {
  readonly #cache: LRUCache<string, Entry> | null

  constructor (max: number) {
    this.#cache = max > 0 ? new LRUCache<string, Entry>({ max, ttlAutopurge: false }) : null
  }

  get (raw: string): Entry | undefined {
    return this.#cache?.get(raw)
  }

  /** `lifetime` (ms) bounds the entry by the token's remaining validity. */
  set (raw: string, token: EntraToken, key: SigningKey, lifetime: number): void {
    if (this.#cache === null || lifetime <= 0) return
    this.#cache.set(raw, { token, key }, { ttl: Math.ceil(lifetime) })
  }

  delete (raw: string): void {
    this.#cache?.delete(raw)
  }

  get size (): number {
    return this.#cache?.size ?? 0
  }

  get max (): number {
    return this.#cache?.max ?? 0
  }

  clear (): void {
    this.#cache?.clear()
  }
}
