// Worker thread that signs benchmark tokens with the test kit, so minting runs before (never
// during) a measured run and on every core. workerData: { privateKeyPem, kid, from, count, users }.
import { createPrivateKey } from 'node:crypto'
import { parentPort, workerData } from 'node:worker_threads'
import { MockClaims, MockJwtClient } from '../dist/testing/index.js'
import { CLIENT_APP, CLIENT_ID, ISSUER, TENANT_ID, guid } from './common.js'

const { privateKeyPem, kid, from, count, users } = workerData
// MockJwtClient only reads `kid` and `privateKey` of its MockJwk.
const key = { kid, privateKey: createPrivateKey(privateKeyPem) }

/** One client per user, with the claims of a v2.0 delegated Entra access token. */
function clientFor (user) {
  const oid = guid('0b1ec700', user)
  const claims = new MockClaims({
    selfAppId: CLIENT_ID,
    iss: ISSUER,
    extra: {
      tid: TENANT_ID,
      oid,
      name: `Bench User ${user}`,
      preferred_username: `user${user}@contoso.example`,
      azpacr: '0',
      rh: '0.AXkAv4j5cvGGr0GRqy180BHbR-bench.',
      aio: 'AWQAm/8YAAAAbenchbenchbenchbenchbenchbenchbenchbenchbenchbench'
    }
  })
  claims.sub = `sub-${oid}`
  claims.azp = CLIENT_APP
  claims.scp = 'access_as_user Files.Read'
  claims.roles = undefined
  return new MockJwtClient({ key, claims })
}

const clients = new Map()
const tokens = new Array(count)
for (let i = 0; i < count; i++) {
  const n = from + i
  const user = n % users
  let client = clients.get(user)
  if (client === undefined) {
    client = clientFor(user)
    clients.set(user, client)
  }
  // `uti` (Entra's unique token ID) makes every token distinct, even within one second.
  tokens[i] = client.generate({ additionalClaims: { uti: guid('7a1e0000', n), sid: guid('5e550000', user) } })
}
parentPort.postMessage(tokens)
