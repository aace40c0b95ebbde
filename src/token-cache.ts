import { LRUCache } from 'lru-cache'
import type { SigningKey } from './keys.js'
import type { EntraToken } from './token.js'

interface Entry {
  readonly raw: string
  readonly token: EntraToken
  readonly key: SigningKey
}

/** Characters at the end of a token (its signature) that entries are looked up by. */
const LOOKUP_LENGTH = 32

/**
 * The lookup key of `raw`: its end, since hashing a whole token (1–6 kB, a new string on every
 * request) cost more than the rest of a cache hit. Entries are then compared in full.
 */
function lookupKey (raw: string): string {
  return raw.length > LOOKUP_LENGTH ? raw.slice(-LOOKUP_LENGTH) : raw
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

  /** The entry of exactly `raw`: a token that only ends like a cached one is a miss. */
  get (raw: string): Entry | undefined {
    const entry = this.#cache?.get(lookupKey(raw))
    return entry !== undefined && entry.raw === raw ? entry : undefined
  }

  /** `lifetime` (ms) bounds the entry by the token's remaining validity. */
  set (raw: string, token: EntraToken, key: SigningKey, lifetime: number): void {
    if (this.#cache === null || lifetime <= 0) return
    this.#cache.set(lookupKey(raw), { raw, token, key }, { ttl: Math.ceil(lifetime) })
  }

  delete (raw: string): void {
    const key = lookupKey(raw)
    if (this.#cache?.peek(key, { allowStale: true })?.raw === raw) this.#cache.delete(key)
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
