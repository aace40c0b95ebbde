import { sign } from 'node:crypto'
import type { MockJwk } from './mock-jwks.js'

/** Claim values for fake tokens; `false` omits a claim. */
export type ClaimOverrides = Record<string, unknown> & { additionalClaims?: Record<string, unknown> }

/** Issuer of the mock tokens, as in the Python flask-entra-auth's test kit. */
export const MOCK_ISSUER = 'https://issuer.auth.example.com'

/** Default claims of fake tokens, as the Python flask-entra-auth's `MockClaims`, with Entra's real shapes. */
export class MockClaims {
  iss: string
  sub: string
  aud: string
  /** `undefined` leaves a claim out. */
  azp: string | undefined
  ver: string
  scp: string | undefined
  roles: string[] | undefined
  /** Further default claims (e.g. `tid`, `oid`) merged into every token. */
  extra: Record<string, unknown>
  /** Clock for `exp`/`nbf`, in milliseconds. */
  now: () => number

  constructor (options: { selfAppId: string, iss?: string, now?: () => number, extra?: Record<string, unknown> }) {
    this.iss = options.iss ?? MOCK_ISSUER
    this.sub = 'test_subject'
    this.aud = options.selfAppId
    this.azp = 'test_app_2'
    this.ver = '2.0'
    this.scp = 'SCOPE_A SCOPE_B SCOPE_C'
    this.roles = ['ROLE_1', 'ROLE_2', 'ROLE_3']
    this.extra = options.extra ?? {}
    this.now = options.now ?? Date.now
  }

  /** `exp` one hour from now, `nbf` and `iat` now. */
  build (): Record<string, unknown> {
    const now = Math.floor(this.now() / 1000)
    const claims: Record<string, unknown> = {
      iss: this.iss,
      sub: this.sub,
      aud: this.aud,
      exp: now + 3600,
      nbf: now,
      iat: now,
      azp: this.azp,
      ver: this.ver,
      scp: this.scp,
      roles: this.roles === undefined ? undefined : [...this.roles],
      ...this.extra
    }
    for (const name of Object.keys(claims)) if (claims[name] === undefined) delete claims[name]
    return claims
  }
}

function segment (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/**
 * Signs fake RS256 tokens with a {@link MockJwk}, like the Python flask-entra-auth's `MockJwtClient`.
 * @example
 * ```ts
 * client.generate()                                   // default claims
 * client.generate({ scp: false, roles: false })       // no scopes
 * client.generate({ exp: 1 })                         // expired
 * client.generate({ additionalClaims: { foo: 'bar' } })
 * ```
 */
export class MockJwtClient {
  readonly key: MockJwk
  readonly claims: MockClaims

  constructor (options: { key: MockJwk, claims: MockClaims }) {
    this.key = options.key
    this.claims = options.claims
  }

  /** A token with the default claims, `overrides` replacing (or with `false`, omitting) claims. */
  generate (overrides: ClaimOverrides = {}): string {
    const { additionalClaims, ...replaced } = overrides
    const payload: Record<string, unknown> = { ...this.claims.build() }
    for (const [name, value] of Object.entries(replaced)) {
      if (value === false) delete payload[name]
      else payload[name] = value
    }
    return this.sign({ alg: 'RS256', typ: 'JWT', kid: this.key.kid }, { ...payload, ...additionalClaims })
  }

  /** A token with no `kid` header and an empty payload. */
  generateEmpty (): string {
    return this.sign({ alg: 'RS256', typ: 'JWT' }, {})
  }

  /** A token with a `kid` header and an empty payload. */
  generateKid (): string {
    return this.sign({ alg: 'RS256', typ: 'JWT', kid: this.key.kid }, {})
  }

  /** Signs any header and payload as given, for tests of hostile tokens. */
  sign (header: Record<string, unknown>, payload: unknown): string {
    const input = `${segment(header)}.${segment(payload)}`
    return `${input}.${sign('sha256', Buffer.from(input), this.key.privateKey).toString('base64url')}`
  }
}
