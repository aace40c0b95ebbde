import neostandard from 'neostandard'

/**
 * The layers of src/, enforced: an import that crosses a layer the wrong way fails lint.
 * core/ (plumbing: JWS, the get-jwks and @fastify/jwt layers, fetching, key store,
 * token cache, tracing) knows neither Entra nor Fastify; entra/ (pure Entra rules and the token
 * model) knows no Fastify and no I/O; fastify/ is the glue; inspect/ is the token debugger, on the
 * verifier's `explain()`. Type-only imports may cross (a type carries no behaviour).
 */
const FASTIFY = [{ group: ['fastify', 'fastify-plugin', '**/fastify/*'], allowTypeImports: true, message: 'This layer must not depend on Fastify: only src/fastify/ does.' }]
const DEBUGGER = [{ group: ['**/inspect/*', '**/inspect.js', '**/cli.js'], message: 'Only the CLI depends on the token debugger.' }]
const PIPELINE = [{ group: ['**/verifier.js', '**/admission.js', '**/options.js'], allowTypeImports: true, message: 'The pipeline composes this layer, not the other way round.' }]

function layer (files, patterns) {
  return { files, rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] } }
}

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'node_modules/**'] }),
  layer(['src/core/**/*.ts'], [
    ...FASTIFY, ...DEBUGGER, ...PIPELINE,
    // The problem registry is the one Entra module plumbing reaches: its errors are EntraAuthError.
    { group: ['**/entra/*', '!**/entra/problems.js'], allowTypeImports: true, message: 'Plumbing knows no Entra rules: src/core/ must not import src/entra/ (except the problem registry).' }
  ]),
  layer(['src/entra/**/*.ts'], [
    ...FASTIFY, ...DEBUGGER, ...PIPELINE,
    { group: ['**/core/*'], allowTypeImports: true, message: 'Entra rules are pure: src/entra/ must not import the plumbing of src/core/.' }
  ]),
  layer(['src/fastify/**/*.ts'], [...DEBUGGER]),
  layer(['src/inspect/**/*.ts'], [
    ...FASTIFY,
    { group: ['**/core/keys.js', '**/core/signature.js', '**/core/jwks.js', '**/core/token-cache.js', '**/entra/claims.js'], message: 'The token debugger validates through the verifier (explain()), never with the key store or the claim rules directly.' }
  ])
]
