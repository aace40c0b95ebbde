import { LRUCache } from 'lru-cache'
import type { SigningKey } from './keys.js'
import type { EntraToken } from '../entra/token.js'

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

/** Rough heap cost of one entry: the token string, its decoded claims and header, the wrapper. */
function entrySize (entry: Entry): number {
  return entry.raw.length * 4 + 1024
}

/** Bits in each half of the doorkeeper (2^20 bits = 128 KiB per half). */
const DOORKEEPER_BITS = 1 << 20

/**
 * Remembers, in fixed memory, which tokens were verified once (a "doorkeeper", as in TinyLFU).
 * Two bit sets: marks go into the current one; after `capacity` marks the older is cleared and
 * becomes current, so old marks age out. A false positive only admits a token one visit early.
 */
class Doorkeeper {
  #current = new Uint32Array(DOORKEEPER_BITS / 32)
  #previous = new Uint32Array(DOORKEEPER_BITS / 32)
  #marks = 0
  readonly #capacity: number

  constructor (capacity: number) {
    this.#capacity = capacity
  }

  /** FNV-1a over the signature's last characters: uniformly spread, no allocation. */
  static #hash (raw: string): number {
    let hash = 0x811c9dc5
    for (let i = Math.max(0, raw.length - 24); i < raw.length; i++) {
      hash = Math.imul(hash ^ raw.charCodeAt(i), 0x01000193)
    }
    return (hash >>> 0) % DOORKEEPER_BITS
  }

  /** True when `raw` was marked before; marks it either way. */
  seenBefore (raw: string): boolean {
    const bit = Doorkeeper.#hash(raw)
    const word = bit >>> 5
    const mask = 1 << (bit & 31)
    const current = this.#current
    if (((current[word] as number) & mask) !== 0 || ((this.#previous[word] as number) & mask) !== 0) return true
    current[word] = (current[word] as number) | mask
    if (++this.#marks >= this.#capacity) {
      this.#previous = current
      this.#current = new Uint32Array(DOORKEEPER_BITS / 32)
      this.#marks = 0
    }
    return false
  }
}

export interface TokenCacheLimits {
  /** Most entries; 0 turns the cache off. */
  max: number
  /** Most (estimated) bytes held by entries. */
  maxBytes: number
}

/** Entries of the probation segment: few, so never-seen tokens die young (cheap for the GC). */
const PROBATION_MAX = 256

/**
 * Verified tokens by their exact string, so a token seen before skips the RSA verification and
 * claim checks. Callers still judge `nbf`/`exp` and the key's usability on every hit.
 *
 * Nearly free on a miss. A stream of never-seen tokens used to fill and churn one big LRU of
 * large objects, which cost more CPU (old-generation garbage collection) than the RSA signature.
 * Now, as in segmented LRU / TinyLFU caches:
 * - a token verified for the first time goes into a small probation segment, where it dies young;
 * - a probation hit, or a second verification of the same token (remembered in fixed memory by
 *   the doorkeeper, after it left probation), moves it to the main segment.
 * Bounded by entries and by bytes; an entry never outlives the token's `exp`.
 */
export class TokenCache {
  readonly #main: LRUCache<string, Entry> | null
  readonly #probation: LRUCache<string, Entry> | null
  readonly #doorkeeper: Doorkeeper
  readonly #max: number

  constructor (limits: TokenCacheLimits) {
    const enabled = limits.max > 0
    // The probation segment takes a quarter of the entries (at most PROBATION_MAX); tiny caches have none.
    const probation = limits.max >= 8 ? Math.min(PROBATION_MAX, Math.floor(limits.max / 4)) : 0
    this.#main = enabled
      ? new LRUCache<string, Entry>({ max: limits.max - probation, maxSize: limits.maxBytes, sizeCalculation: entrySize, ttlAutopurge: false })
      : null
    this.#probation = probation > 0 ? new LRUCache<string, Entry>({ max: probation, ttlAutopurge: false }) : null
    this.#max = limits.max
    this.#doorkeeper = new Doorkeeper(Math.max(1024, limits.max * 8))
  }

  /** The entry of exactly `raw`: a token that only ends like a cached one is a miss. */
  get (raw: string): Entry | undefined {
    const key = lookupKey(raw)
    const entry = this.#main?.get(key)
    if (entry !== undefined) return entry.raw === raw ? entry : undefined
    const trial = this.#probation?.get(key)
    if (trial === undefined || trial.raw !== raw) return undefined
    // Seen again while on probation: a token that is really reused.
    const ttl = this.#probation?.getRemainingTTL(key) ?? 0
    this.#probation?.delete(key)
    if (ttl > 0) this.#main?.set(key, trial, { ttl: Math.ceil(ttl) })
    return trial
  }

  /** Stores a just-verified token; `lifetime` (ms) bounds the entry by the token's remaining validity. */
  set (raw: string, token: EntraToken, key: SigningKey, lifetime: number): void {
    if (this.#main === null || lifetime <= 0) return
    const segment = this.#probation === null || this.#doorkeeper.seenBefore(raw) ? this.#main : this.#probation
    segment.set(lookupKey(raw), { raw, token, key }, { ttl: Math.ceil(lifetime) })
  }

  delete (raw: string): void {
    const key = lookupKey(raw)
    for (const segment of [this.#main, this.#probation]) {
      if (segment?.peek(key, { allowStale: true })?.raw === raw) segment.delete(key)
    }
  }

  get size (): number {
    return (this.#main?.size ?? 0) + (this.#probation?.size ?? 0)
  }

  get max (): number {
    return this.#max
  }

  /** Estimated bytes held by the main segment. */
  get bytes (): number {
    return this.#main?.calculatedSize ?? 0
  }

  clear (): void {
    this.#main?.clear()
    this.#probation?.clear()
  }
}
