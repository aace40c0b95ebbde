/**
 * The one fixture layer of the tests: apps and fakes (apps.ts), request helpers (http.ts), the
 * problem-reply assertion (problems.ts), vendored fixture files (fixtures.ts). Build helpers for
 * the end-to-end tests are in build.ts (imported directly: they spawn processes).
 */
export * from './apps.js'
export * from './http.js'
export * from './problems.js'
export * from './fixtures.js'
