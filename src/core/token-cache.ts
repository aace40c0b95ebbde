import type { SigningKey } from './keys.js'
import type { EntraToken } from '../entra/token.js'

interface Entry {
  readonly raw: string
  readonly token: EntraToken
  readonly key: SigningKey
  /** `performance.now()` at which the entry goes stale: the token's `exp` (with tolerance). */
  readonly expires: number
  /** Estimated heap cost, counted against `maxBytes`. */
  readonly size: number
  /** Read since it was inserted or last spared by eviction (CLOCK's reference bit). */
  visited: boolean
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
function entrySize (raw: string): number {
  return raw.length * 4 + 1024
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
 * What a cache costs on a stream of never-seen tokens is the garbage collector's: an entry kept
 * for thousands of requests is copied and promoted to the old generation, and that cost more CPU
 * than the rest of a miss (docs/performance.md). So, as in segmented LRU / TinyLFU caches:
 * - a token verified for the first time goes into a small FIFO probation segment, where it dies young;
 * - a probation hit, or a second verification of the same token (remembered in fixed memory by
 *   the doorkeeper), puts it in the main segment, one `Map` evicted CLOCK-style (second chance:
 *   a hit only sets a bit, eviction spares an entry read since it was inserted).
 * A miss is two `Map` lookups; bounded by entries and by bytes; a stale entry is never served.
 */
export class TokenCache {
  readonly #main = new Map<string, Entry>()
  readonly #probation = new Map<string, Entry>()
  readonly #doorkeeper: Doorkeeper
  readonly #max: number
  readonly #mainMax: number
  readonly #probationMax: number
  readonly #maxBytes: number
  #bytes = 0

  constructor (limits: TokenCacheLimits) {
    this.#max = limits.max
    this.#maxBytes = limits.maxBytes
    // The probation segment takes a quarter of the entries (at most PROBATION_MAX); tiny caches have none.
    this.#probationMax = limits.max >= 8 ? Math.min(PROBATION_MAX, Math.floor(limits.max / 4)) : 0
    this.#mainMax = limits.max - this.#probationMax
    this.#doorkeeper = new Doorkeeper(Math.max(1024, limits.max * 8))
  }

  /** The entry of exactly `raw`: a token that only ends like a cached one is a miss. */
  get (raw: string): Entry | undefined {
    if (this.#max === 0) return undefined
    const id = lookupKey(raw)
    let entry = this.#main.get(id)
    if (entry === undefined) {
      entry = this.#probation.get(id)
      if (entry === undefined || entry.raw !== raw) return undefined
      // Seen again while on probation: a token that is really reused.
      this.#probation.delete(id)
      if (entry.expires <= performance.now()) return undefined
      this.#insert(id, entry)
      return entry
    }
    if (entry.raw !== raw) return undefined
    if (entry.expires <= performance.now()) {
      this.#remove(id, entry)
      return undefined
    }
    entry.visited = true
    return entry
  }

  /** Stores a just-verified token; `lifetime` (ms) bounds the entry by the token's remaining validity. */
  set (raw: string, token: EntraToken, key: SigningKey, lifetime: number): void {
    if (this.#max === 0 || !(lifetime > 0)) return
    const id = lookupKey(raw)
    this.delete(raw)
    const entry: Entry = { raw, token, key, expires: performance.now() + lifetime, size: entrySize(raw), visited: false }
    if (this.#probationMax === 0 || this.#doorkeeper.seenBefore(raw)) {
      this.#insert(id, entry)
      return
    }
    const probation = this.#probation
    if (probation.size >= this.#probationMax) probation.delete(probation.keys().next().value as string)
    probation.set(id, entry)
  }

  delete (raw: string): void {
    const id = lookupKey(raw)
    const entry = this.#main.get(id)
    if (entry !== undefined && entry.raw === raw) this.#remove(id, entry)
    if (this.#probation.get(id)?.raw === raw) this.#probation.delete(id)
  }

  #insert (id: string, entry: Entry): void {
    const previous = this.#main.get(id)
    if (previous !== undefined) this.#remove(id, previous)
    if (entry.size > this.#maxBytes) return
    while (this.#main.size > 0 && (this.#main.size >= this.#mainMax || this.#bytes + entry.size > this.#maxBytes)) this.#evict()
    this.#main.set(id, entry)
    this.#bytes += entry.size
  }

  /** Drops the oldest main entry not read since it was inserted or last spared (or a stale one). */
  #evict (): void {
    const now = performance.now()
    for (const [id, entry] of this.#main) {
      this.#main.delete(id)
      if (entry.visited && entry.expires > now) {
        // Second chance: to the back of the line, bit cleared.
        entry.visited = false
        this.#main.set(id, entry)
        continue
      }
      this.#bytes -= entry.size
      return
    }
  }

  #remove (id: string, entry: Entry): void {
    this.#main.delete(id)
    this.#bytes -= entry.size
  }

  get size (): number {
    return this.#main.size + this.#probation.size
  }

  get max (): number {
    return this.#max
  }

  /** Estimated bytes held by the main segment. */
  get bytes (): number {
    return this.#bytes
  }

  clear (): void {
    this.#main.clear()
    this.#probation.clear()
    this.#bytes = 0
  }
}
