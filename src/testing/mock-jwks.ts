import { generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto'

/** One RSA-2048 signing key for fake tokens: the private half signs, the public half is published. */
export class MockJwk {
  /** Key ID, sent as the token's `kid` header and the JWK's `kid`. */
  readonly kid: string
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  /** Entra-style JWK `issuer` member to publish with the key, if any. */
  issuer: string | undefined

  constructor (options: { kid?: string, issuer?: string } = {}) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    this.kid = options.kid ?? randomUUID()
    this.privateKey = privateKey
    this.publicKey = publicKey
    this.issuer = options.issuer
  }

  /** The public JWK as Entra publishes it (`kty`, `use`, `kid`, `n`, `e`, optionally `issuer`). */
  toJSON (): JsonWebKey & { kid: string, use: 'sig', issuer?: string } {
    const { n, e } = this.publicKey.export({ format: 'jwk' })
    const jwk: JsonWebKey & { kid: string, use: 'sig', issuer?: string } = { kty: 'RSA', use: 'sig', kid: this.kid, n, e }
    if (this.issuer !== undefined) jwk.issuer = this.issuer
    return jwk
  }
}

/**
 * A JSON Web Key Set with one signing key, like the seed's `MockJwks`.
 *
 * @example
 * ```ts
 * const jwks = new MockJwks()
 * const client = new MockJwtClient({ key: jwks.jwk, claims: new MockClaims({ selfAppId: clientId }) })
 * ```
 */
export class MockJwks {
  /** The signing key. */
  readonly jwk: MockJwk
  /** Further keys published in the same set (key rotation tests). */
  readonly extra: MockJwk[] = []

  constructor (options: { kid?: string, issuer?: string } = {}) {
    this.jwk = new MockJwk(options)
  }

  /** The public JWKS document `{ keys: [...] }`. */
  toJSON (): { keys: ReturnType<MockJwk['toJSON']>[] } {
    return { keys: [this.jwk, ...this.extra].map(key => key.toJSON()) }
  }
}
