/** Clients of the fake Entra's token endpoint through its in-process dispatcher (no socket). */
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node'
import { request } from 'undici'
import type { FakeEntra } from '../../src/testing/index.js'

export interface TokenReply { status: number, headers: Record<string, string | string[] | undefined>, body: Record<string, unknown> }

/** POSTs `form` to the token endpoint. */
export async function postToken (entra: FakeEntra, form: Record<string, string>, headers: Record<string, string> = {}): Promise<TokenReply> {
  const response = await request(entra.tokenEndpoint, {
    method: 'POST',
    dispatcher: entra.dispatcher,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString()
  })
  return { status: response.statusCode, headers: response.headers, body: await response.body.json() as Record<string, unknown> }
}

/** MSAL Node's documented `system.networkClient`, sending through the fake's dispatcher. */
export function msalNetworkClient (entra: FakeEntra): INetworkModule {
  async function send<T> (url: string, method: 'GET' | 'POST', options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    const response = await request(url, { method, dispatcher: entra.dispatcher, headers: options?.headers ?? {}, ...(method === 'POST' ? { body: options?.body ?? '' } : {}) })
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) headers[name] = String(value)
    return { status: response.statusCode, headers, body: await response.body.json() as T }
  }
  return {
    sendGetRequestAsync: async <T>(url: string, options?: NetworkRequestOptions) => await send<T>(url, 'GET', options),
    sendPostRequestAsync: async <T>(url: string, options?: NetworkRequestOptions) => await send<T>(url, 'POST', options)
  }
}
