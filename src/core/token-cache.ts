import type { SigningKey } from './keys.js'
import type { EntraToken } from '../entra/token.js'

interface Entry {
  readonly raw: string
  readonly hash: number
  readonly token: EntraToken
  readonly key: SigningKey
  /** The token's `nbf` and `exp`, judged again on every hit without touching the token's claims. */
  readonly nbf: number
  readonly exp: number
  readonly expires: number
  readonly size: number
  visited: boolean
}

/** FNV-1a over the signature's last 24 characters (docs/performance.md); a collision is only a miss. */
function hashOf (raw: string): number {
  let hash = 0x811c9dc5
  for (let i = Math.max(0, raw.length - 24); i < raw.length; i++) {
    hash = Math.imul(hash ^ raw.charCodeAt(i), 0x01000193)
  }
  return hash >>> 2
}

function entrySize (raw: string): number {
  return raw.length * 4 + 1024
}

const DOORKEEPER_WORDS_LOG2 = 15
const DOORKEEPER_WORDS = 1 << DOORKEEPER_WORDS_LOG2

/**
 * TinyLFU's doorkeeper: a false positive admits a token one visit early. Two bits per mark, both in
 * one 32-bit word (a blocked Bloom filter): one memory access per generation instead of two.
 */
class Doorkeeper {
  #current = new Int32Array(DOORKEEPER_WORDS)
  #previous = new Int32Array(DOORKEEPER_WORDS)
  #marks = 0
  readonly #capacity: number

  constructor (capacity: number) {
    this.#capacity = capacity
  }

  /** True when `hash` was marked before; marks it either way. */
  seenBefore (hash: number): boolean {
    // The word from the hash's low bits; the two bits from its high bits, mixed (Fibonacci hashing).
    const word = hash & (DOORKEEPER_WORDS - 1)
    const mixed = Math.imul(hash, 0x9e3779b1)
    const bits = (1 << (mixed >>> 27)) | (1 << ((mixed >>> 22) & 31))
    if (((this.#current[word] as number) & bits) === bits || ((this.#previous[word] as number) & bits) === bits) return true
    this.#current[word] = (this.#current[word] as number) | bits
    if (++this.#marks >= this.#capacity) {
      this.#previous = this.#current
      this.#current = new Int32Array(DOORKEEPER_WORDS)
      this.#marks = 0
    }
    return false
  }
}

export interface TokenCacheLimits {
  max: number
  maxBytes: number
}

const PROBATION_SLOTS = 256

/** Verified tokens by their exact string; a probation table spares the GC never-seen tokens (docs/performance.md). */
export class TokenCache {
  readonly #main = new Map<number, Entry>()
  readonly #probation: Array<Entry | undefined>
  // The slots' hashes (-1: empty), read first: a never-seen token touches 1 kB, not the entries.
  readonly #probationHashes: Int32Array
  readonly #doorkeeper: Doorkeeper
  readonly #max: number
  readonly #mainMax: number
  readonly #maxBytes: number
  #bytes = 0

  constructor (limits: TokenCacheLimits) {
    this.#max = limits.max
    this.#maxBytes = limits.maxBytes
    const slots = limits.max >= 8 ? Math.min(PROBATION_SLOTS, 2 ** Math.floor(Math.log2(limits.max / 4))) : 0
    this.#probation = new Array<Entry | undefined>(slots).fill(undefined)
    this.#probationHashes = new Int32Array(slots).fill(-1)
    this.#mainMax = limits.max - slots
    this.#doorkeeper = new Doorkeeper(Math.max(1024, limits.max * 8))
  }

  get (raw: string): Entry | undefined {
    if (this.#max === 0) return undefined
    const hash = hashOf(raw)
    const entry = this.#main.get(hash)
    if (entry !== undefined) {
      if (entry.raw !== raw) return undefined
      if (entry.expires <= performance.now()) {
        this.#remove(entry)
        return undefined
      }
      entry.visited = true
      return entry
    }
    const probation = this.#probation
    if (probation.length === 0) return undefined
    const slot = this.#slot(hash)
    if (this.#probationHashes[slot] !== hash) return undefined
    const candidate = probation[slot]
    if (candidate === undefined || candidate.raw !== raw) return undefined
    this.#vacate(slot)
    if (candidate.expires <= performance.now()) return undefined
    this.#insert(candidate)
    return candidate
  }

  set (raw: string, token: EntraToken, key: SigningKey, lifetime: number, nbf: number, exp: number): void {
    if (this.#max === 0 || !(lifetime > 0)) return
    const hash = hashOf(raw)
    const entry: Entry = { raw, hash, token, key, nbf, exp, expires: performance.now() + lifetime, size: entrySize(raw), visited: false }
    const probation = this.#probation
    if (probation.length === 0 || this.#doorkeeper.seenBefore(hash)) {
      this.#dropProbation(raw, hash)
      this.#insert(entry)
      return
    }
    const slot = this.#slot(hash)
    probation[slot] = entry
    this.#probationHashes[slot] = hash
  }

  delete (raw: string): void {
    if (this.#max === 0) return
    const hash = hashOf(raw)
    const entry = this.#main.get(hash)
    if (entry !== undefined && entry.raw === raw) this.#remove(entry)
    this.#dropProbation(raw, hash)
  }

  #dropProbation (raw: string, hash: number): void {
    const probation = this.#probation
    if (probation.length === 0) return
    const slot = this.#slot(hash)
    if (this.#probationHashes[slot] === hash && probation[slot]?.raw === raw) this.#vacate(slot)
  }

  #vacate (slot: number): void {
    this.#probation[slot] = undefined
    this.#probationHashes[slot] = -1
  }

  /** The probation slot of `hash` (the table's length is a power of two). */
  #slot (hash: number): number {
    return hash & (this.#probation.length - 1)
  }

  #insert (entry: Entry): void {
    const main = this.#main
    const previous = main.get(entry.hash)
    if (previous !== undefined) this.#remove(previous)
    if (entry.size > this.#maxBytes) return
    while (main.size > 0 && (main.size >= this.#mainMax || this.#bytes + entry.size > this.#maxBytes)) this.#evict()
    main.set(entry.hash, entry)
    this.#bytes += entry.size
  }

  #evict (): void {
    const now = performance.now()
    for (const entry of this.#main.values()) {
      this.#main.delete(entry.hash)
      if (entry.visited && entry.expires > now) {
        entry.visited = false
        this.#main.set(entry.hash, entry)
        continue
      }
      this.#bytes -= entry.size
      return
    }
  }

  #remove (entry: Entry): void {
    this.#main.delete(entry.hash)
    this.#bytes -= entry.size
  }

  get size (): number {
    let onProbation = 0
    for (const entry of this.#probation) if (entry !== undefined) onProbation++
    return this.#main.size + onProbation
  }

  get max (): number {
    return this.#max
  }

  get bytes (): number {
    return this.#bytes
  }
}
