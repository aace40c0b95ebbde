import { Agent, request, type Dispatcher } from 'undici'

/** Why fetching an identity-provider document failed; logged, never sent to clients. */
export class FetchFailure extends Error {
  override name = 'FetchFailure'
}

/**
 * A connection pool whose timeouts really apply (get-jwks' own `timeout` option does nothing).
 * undici does not follow redirects unless told to, so a 3xx never leads to another origin.
 */
export function createAgent (timeout: number): Agent {
  return new Agent({ connectTimeout: timeout, headersTimeout: timeout, bodyTimeout: timeout, connections: 4 })
}

export interface FetchJsonOptions {
  dispatcher: Dispatcher
  timeout: number
  maxBytes: number
}

/**
 * GETs a JSON document with a hard deadline and a size cap. The body is judged by parsing it,
 * not by its content type (Entra and test servers disagree on `application/json` variants).
 */
export async function fetchJson (url: URL, { dispatcher, timeout, maxBytes }: FetchJsonOptions): Promise<unknown> {
  // A fresh signal per fetch: a shared one would abort every later fetch once fired.
  const signal = AbortSignal.timeout(timeout)
  let response: Dispatcher.ResponseData
  try {
    response = await request(url, { method: 'GET', dispatcher, signal, headers: { accept: 'application/json' } })
  } catch (err) {
    throw new FetchFailure(signal.aborted ? `no response within ${timeout} ms` : `request failed: ${(err as Error).message}`)
  }
  const { statusCode, body } = response
  if (statusCode < 200 || statusCode > 299) {
    body.dump().catch(() => {})
    throw new FetchFailure(`HTTP status ${statusCode}`)
  }
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length
      if (size > maxBytes) {
        body.destroy()
        throw new FetchFailure(`response larger than ${maxBytes} bytes`)
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    if (err instanceof FetchFailure) throw err
    throw new FetchFailure(signal.aborted ? `response not complete within ${timeout} ms` : `response failed: ${(err as Error).message}`)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new FetchFailure('response is not JSON')
  }
}
