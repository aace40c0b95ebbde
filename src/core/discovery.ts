import { FetchFailure } from './http.js'

export interface Discovery {
  readonly issuer: string
  readonly jwksUri: URL
  readonly authorizationEndpoint: string | undefined
  readonly tokenEndpoint: string | undefined
}

function optionalString (value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

/** `jwks_uri` must be on the discovery URL's origin; `issuer` is taken as published (Entra's need not be). */
export function parseDiscovery (document: unknown, discoveryUrl: URL): Discovery {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new FetchFailure('discovery document is not a JSON object')
  }
  const { issuer, jwks_uri: jwksUri, authorization_endpoint: authorize, token_endpoint: token } = document as Record<string, unknown>
  if (typeof issuer !== 'string' || issuer === '') throw new FetchFailure("discovery document has no 'issuer'")
  if (typeof jwksUri !== 'string' || jwksUri === '') throw new FetchFailure("discovery document has no 'jwks_uri'")
  let url: URL
  try {
    url = new URL(jwksUri)
  } catch {
    throw new FetchFailure("discovery document 'jwks_uri' is not a URL")
  }
  if (url.origin !== discoveryUrl.origin) {
    throw new FetchFailure(`discovery document 'jwks_uri' is on ${url.origin}, not on the discovery URL's origin ${discoveryUrl.origin}`)
  }
  return Object.freeze({
    issuer,
    jwksUri: url,
    authorizationEndpoint: optionalString(authorize),
    tokenEndpoint: optionalString(token)
  })
}
