// What both benchmark scripts share: the local identity provider and the token minting.
// Plain ESM, not part of the package.
import { createServer } from 'node:http'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { DISCOVERY_PATH, ISSUER, JWKS_PATH } from './common.js'

/** Distinct users the tokens belong to (token n is user n % USERS's). */
export const USERS = 1000

/** The identity provider: discovery and JWKS on 127.0.0.1, built from the test kit's key. */
export async function startIdp (jwks) {
  const counts = { discovery: 0, jwks: 0 }
  const server = createServer((req, res) => {
    const origin = `http://${req.headers.host}`
    let body
    if (req.url === DISCOVERY_PATH) {
      counts.discovery++
      body = {
        issuer: ISSUER,
        jwks_uri: `${origin}${JWKS_PATH}`,
        authorization_endpoint: `${origin}/oauth2/v2.0/authorize`,
        token_endpoint: `${origin}/oauth2/v2.0/token`,
        id_token_signing_alg_values_supported: ['RS256']
      }
    } else if (req.url === JWKS_PATH) {
      counts.jwks++
      body = jwks.toJSON()
    } else {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    counts,
    close () {
      server.closeAllConnections()
      server.close()
    }
  }
}

/** Signs `count` tokens numbered from `from` on all cores (worker threads), before any run. */
export async function mint (key, from, count) {
  const privateKeyPem = key.privateKey.export({ type: 'pkcs8', format: 'pem' })
  const workers = Math.max(1, Math.min(availableParallelism(), Math.ceil(count / 1000)))
  const share = Math.ceil(count / workers)
  const parts = []
  for (let w = 0; w < workers; w++) {
    const start = w * share
    const n = Math.min(share, count - start)
    if (n <= 0) break
    parts.push(new Promise((resolve, reject) => {
      const worker = new Worker(new URL('./mint.js', import.meta.url), {
        workerData: { privateKeyPem, kid: key.kid, from: from + start, count: n, users: USERS }
      })
      worker.once('message', resolve)
      worker.once('error', reject)
    }))
  }
  return (await Promise.all(parts)).flat()
}
