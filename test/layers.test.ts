/**
 * The layers of src/ are enforced by lint (eslint.config.js, `no-restricted-imports` per folder):
 * an import that crosses a layer the wrong way is an error, one the right way is not. Checked by
 * linting a line of code as if it were a file of each layer.
 */
import { ESLint } from 'eslint'
import t from 'tap'

const RULE = '@typescript-eslint/no-restricted-imports'
const eslint = new ESLint({ cwd: new URL('..', import.meta.url).pathname })

async function refused (file: string, code: string): Promise<boolean> {
  const [result] = await eslint.lintText(`${code}\nexport const used = x\n`, { filePath: file })
  return (result?.messages ?? []).some(message => message.ruleId === RULE)
}

t.test('imports that cross a layer the wrong way fail lint', async t => {
  const wrong: Array<[string, string]> = [
    ['src/core/x.ts', "import { checkClaims as x } from '../entra/claims.js'"],
    ['src/core/x.ts', "import { buildVerifier as x } from '../verifier.js'"],
    ['src/core/x.ts', "import x from 'fastify-plugin'"],
    ['src/core/x.ts', "import { sendProblem as x } from '../fastify/problem-reply.js'"],
    ['src/entra/x.ts', "import { KeyStore as x } from '../core/keys.js'"],
    ['src/entra/x.ts', "import { entraAuth as x } from '../fastify/plugin.js'"],
    ['src/fastify/x.ts', "import { inspectToken as x } from '../inspect.js'"],
    ['src/inspect/x.ts', "import { KeyStore as x } from '../core/keys.js'"],
    ['src/inspect/x.ts', "import { checkClaims as x } from '../entra/claims.js'"],
    ['src/inspect/x.ts', "import { verifySignature as x } from '../core/signature.js'"]
  ]
  for (const [file, code] of wrong) t.equal(await refused(file, code), true, `${file}: ${code}`)
})

t.test('imports the right way pass', async t => {
  const right: Array<[string, string]> = [
    ['src/core/x.ts', "import { EntraAuthError as x } from '../entra/problems.js'"],
    ['src/core/x.ts', "import type { EntraToken as x } from '../entra/token.js'"],
    ['src/entra/x.ts', "import type { JoseHeader as x } from '../core/jws.js'"],
    ['src/fastify/x.ts', "import { KeyStore as x } from '../core/keys.js'"],
    ['src/fastify/x.ts', "import { checkClaims as x } from '../entra/claims.js'"],
    ['src/inspect/x.ts', "import { buildVerifier as x } from '../verifier.js'"],
    ['src/verifier.ts', "import { KeyStore as x } from './core/keys.js'"]
  ]
  for (const [file, code] of right) t.equal(await refused(file, code), false, `${file}: ${code}`)
})
