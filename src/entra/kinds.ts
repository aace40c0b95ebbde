/** What kind of token this is: used to explain a refusal, never to admit anything. */

const GRAPH_AUDIENCES = new Set(['00000003-0000-0000-c000-000000000000', 'https://graph.microsoft.com', 'https://graph.microsoft.com/'])

export function isGraphToken (header: Record<string, unknown>, payload: Record<string, unknown>): boolean {
  // Graph tokens carry a `nonce` JOSE header whose hash is what was signed.
  if (header.nonce !== undefined) return true
  const aud = payload.aud
  return typeof aud === 'string' ? GRAPH_AUDIENCES.has(aud) : Array.isArray(aud) && aud.some(a => GRAPH_AUDIENCES.has(a))
}

export function graphTokenDetail (scope?: string): string {
  const instead = scope === undefined ? 'one of its scopes, or its .default scope' : `scope ${scope} or one of its scopes`
  return `This token was issued for Microsoft Graph, and Graph tokens cannot be validated by any API but Graph. Request a token for this API instead (${instead}).`
}

export function looksLikeIdToken (payload: Record<string, unknown>): boolean {
  return payload.scp === undefined && payload.roles === undefined && payload.azp === undefined && payload.appid === undefined
}
