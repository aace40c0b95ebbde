import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto'

/** Options of {@link MockJwk}. */
export interface MockJwkOptions {
  /** Key ID. Default a random UUID. */
  kid?: string
  /** Entra-style JWK `issuer` member to publish with the key. */
  issuer?: string
  /** The RSA private key to sign with (`KeyObject`, PEM or JWK). Default {@link sharedTestKey}. */
  privateKey?: KeyObject | string | JsonWebKey
  /** Generate a new RSA-2048 key pair (slow: 0.1–1.5 s), e.g. to test a foreign signer. */
  fresh?: boolean
}

let shared: KeyObject | undefined

/** One RSA-2048 key per process, made on first use: generating one costs 0.1–1.5 s. */
export function sharedTestKey (): KeyObject {
  shared ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  return shared
}

function privateKeyOf (key: KeyObject | string | JsonWebKey): KeyObject {
  if (typeof key === 'string') return createPrivateKey(key)
  if (typeof (key as KeyObject).export === 'function') return key as KeyObject
  return createPrivateKey({ key: key as JsonWebKey, format: 'jwk' })
}

/** One RSA-2048 signing key for fake tokens: the private half signs, the public half is published. */
export class MockJwk {
  /** Key ID, sent as the token's `kid` header and the JWK's `kid`. */
  readonly kid: string
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  /** Entra-style JWK `issuer` member to publish with the key, if any. */
  issuer: string | undefined

  constructor (options: MockJwkOptions = {}) {
    const privateKey = options.privateKey !== undefined
      ? privateKeyOf(options.privateKey)
      : options.fresh === true ? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey : sharedTestKey()
    if (privateKey.asymmetricKeyType !== 'rsa') throw new TypeError('MockJwk: privateKey must be an RSA private key')
    this.kid = options.kid ?? randomUUID()
    this.privateKey = privateKey
    this.publicKey = createPublicKey(privateKey)
    this.issuer = options.issuer
  }

  /** The public JWK as Entra publishes it. */
  toJSON (): JsonWebKey & { kid: string, use: 'sig', issuer?: string } {
    const { n, e } = this.publicKey.export({ format: 'jwk' })
    const jwk: JsonWebKey & { kid: string, use: 'sig', issuer?: string } = { kty: 'RSA', use: 'sig', kid: this.kid, n, e }
    if (this.issuer !== undefined) jwk.issuer = this.issuer
    return jwk
  }
}

/**
 * A JSON Web Key Set with one signing key, like the Python flask-entra-auth's `MockJwks`.
 * @example
 * ```ts
 * import { MockClaims, MockJwks, MockJwtClient } from 'fastify-entra-auth/testing'
 * const mockClient = new MockJwtClient({ key: new MockJwks().jwk, claims: new MockClaims({ selfAppId: clientId }) })
 * ```
 */
export class MockJwks {
  /** The signing key. */
  readonly jwk: MockJwk
  /** Further keys published in the same set. */
  readonly extra: MockJwk[] = []

  constructor (options: MockJwkOptions = {}) {
    this.jwk = new MockJwk(options)
  }

  /** The public JWKS document `{ keys: [...] }`. */
  toJSON (): { keys: ReturnType<MockJwk['toJSON']>[] } {
    return { keys: [this.jwk, ...this.extra].map(key => key.toJSON()) }
  }
}
