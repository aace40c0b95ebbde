// Shared constants of the benchmark (bench/README.md). Plain ESM, not part of the package.

/** Application (client) ID of the protected API: the tokens' `aud`. */
export const CLIENT_ID = 'b3c1e0de-0000-4000-8000-00000000a9e1'

/** Tenant of every token. */
export const TENANT_ID = '72f988bf-0000-4000-8000-00000000f00d'

/** Entra's v2.0 issuer for the tenant, published in discovery, in the JWK and in the tokens. */
export const ISSUER = `https://login.microsoftonline.com/${TENANT_ID}/v2.0`

/** Client application that requested the tokens (`azp`). */
export const CLIENT_APP = 'c0ffee00-0000-4000-8000-000000000002'

/** Paths of the local identity provider. */
export const DISCOVERY_PATH = `/${TENANT_ID}/v2.0/.well-known/openid-configuration`
export const JWKS_PATH = '/.well-known/jwks.json'

/** The single route every server answers, with or without protection. */
export const ROUTE = '/hello'

/** A deterministic GUID-shaped ID for user or token number `n`. */
export function guid (prefix, n) {
  return `${prefix}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`
}

/** Integer environment variable, or `fallback`. */
export function envInt (name, fallback) {
  const value = Number.parseInt(process.env[name] ?? '', 10)
  return Number.isFinite(value) && value >= 0 ? value : fallback
}
