/**
 * The one assertion for problem replies: status from the problem registry, the exact
 * `application/problem+json` media type, the body members, the RFC 6750 challenge that fits the
 * type, `Retry-After` exactly on 503s, and (given the credential) that nothing of it is echoed.
 */
import type { LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import { EntraAuthError, problems, type ProblemType } from '../../src/index.js'

/** An RFC 6750 challenge split into its scheme and `name="value"` attributes. */
export function parseChallenge (header: unknown): { scheme: string, params: Record<string, string> } {
  const value = typeof header === 'string' ? header : ''
  const scheme = /^\S*/.exec(value)?.[0] ?? ''
  const params: Record<string, string> = {}
  for (const [, name, val] of value.slice(scheme.length).matchAll(/([A-Za-z_]+)="([^"]*)"/g)) params[name!] = val!
  return { scheme, params }
}

/** The RFC 6750 `error` attribute a problem of `type` is challenged with (none: `undefined`). */
export function expectedChallengeError (type: ProblemType): string | undefined {
  if (type === 'auth_header_missing') return undefined
  if (type === 'auth_header_invalid') return 'invalid_request'
  const { status } = problems[type]
  if (status === 401) return 'invalid_token'
  if (status === 403) return 'insufficient_scope'
  // 503: the failure is the server's, not the client's credentials: no RFC 6750 error code applies.
  return undefined
}

export interface ProblemExpectations {
  /** The `contact` member expected in the body (checked absent when not given). */
  contact?: string
  /**
   * The `scope` challenge attribute expected: a string, or `null` for none. Not given: not checked
   * (a 403 for scopes has one, other problems have none).
   */
  scope?: string | null
  /**
   * The challenge's `error` attribute when it is not the type's usual one (`null`: none), e.g. no
   * error code for `auth_header_invalid` when the header names another scheme than Bearer.
   */
  challengeError?: string | null
  /** The HTTP status, when the test states it too (it must also be the registry's). */
  status?: number
  /** The credential that was sent: no part of it may appear in the reply. */
  credential?: string
  /** `detail` must match this. */
  detail?: string | RegExp
}

/** The problem `type` of a reply's JSON body (`undefined` if it has none). */
export function problemType (res: LightMyRequestResponse): unknown {
  return (res.json() as { type?: unknown }).type
}

/**
 * Asserts `res` is the plugin's problem reply of `type` (see the file comment); returns the body.
 * Status and title come from the registry, so a test names only the type.
 */
export function assertProblem (t: Test, res: LightMyRequestResponse, type: ProblemType, expected: ProblemExpectations = {}): Record<string, unknown> & { detail: string } {
  const def = problems[type]
  if (expected.status !== undefined) t.equal(def.status, expected.status, `${type} is a ${expected.status} in the registry`)
  t.equal(res.statusCode, def.status, `${type}: HTTP status ${def.status}`)
  t.equal(res.headers['content-type'], 'application/problem+json', 'content-type is exactly application/problem+json')
  const body = res.json() as Record<string, unknown> & { detail: string }
  const keys = ['type', 'title', 'status', 'detail', ...(expected.contact === undefined ? [] : ['contact'])]
  t.same(Object.keys(body).sort(), keys.sort(), 'body members')
  t.equal(body.type, type, 'type')
  t.equal(body.status, res.statusCode, 'body status equals the HTTP status')
  t.equal(body.title, def.title, 'title')
  t.ok(typeof body.detail === 'string' && body.detail.length > 0, 'a detail')
  if (expected.detail !== undefined) t.match(body.detail, expected.detail, 'detail')
  if (expected.contact !== undefined) t.equal(body.contact, expected.contact, 'contact')

  if (expected.credential !== undefined) {
    const token = expected.credential.replace(/^\S+ +/, '')
    t.notOk(res.body.includes(token), 'the body does not contain the credential')
    for (const part of token.split('.').filter(p => p.length >= 8)) {
      t.notOk(res.body.includes(part), 'the body does not contain a part of the token')
    }
  }
  t.notMatch(res.body, /\n\s+at /, 'no stack trace')

  const challenge = parseChallenge(res.headers['www-authenticate'])
  t.equal(challenge.scheme, 'Bearer', 'a Bearer challenge')
  const error = expected.challengeError === undefined ? expectedChallengeError(type) : expected.challengeError ?? undefined
  if (error === undefined) t.notOk('error' in challenge.params, 'no error attribute')
  else t.equal(challenge.params.error, error, `error="${error}"`)
  if (expected.scope === null || (expected.scope === undefined && type !== 'auth_token_insufficient_scopes')) {
    t.notOk('scope' in challenge.params, 'no scope attribute')
  } else if (expected.scope !== undefined) {
    t.equal(challenge.params.scope, expected.scope, 'scope names the required scopes')
  }

  // RFC 9110 §10.2.3: a 503 says when to come back; other problems are not retried as they are.
  if (def.status === 503) t.match(res.headers['retry-after'], /^[1-9]\d*$/, 'Retry-After in seconds')
  else t.notOk('retry-after' in res.headers, 'no Retry-After')
  return body
}

/** 'ok' when `promise` resolves, else the problem type it rejects with (for tables of outcomes). */
export async function typeOf (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'ok'
  } catch (err) {
    return err instanceof EntraAuthError ? err.type : `not an EntraAuthError: ${String(err)}`
  }
}
