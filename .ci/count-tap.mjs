// Counts the leaf test points of a TAP 14 stream (subtest summary points are not counted) and
// prints `N passed, M failed`, the line CI reads.
import { readFileSync } from 'node:fs'

const lines = readFileSync(process.argv[2], 'utf8').split('\n')
const indentOf = (line) => line.length - line.trimStart().length
let passed = 0
let failed = 0
let skipped = 0
let inYaml = -1
let previousIndent = -1
for (const line of lines) {
  const text = line.trim()
  if (text === '') continue
  if (inYaml >= 0) {
    if (text === '...' && indentOf(line) === inYaml) inYaml = -1
    continue
  }
  if (text === '---') { inYaml = indentOf(line); continue }
  if (text.startsWith('#')) continue
  const point = /^(not ok|ok)\b/.exec(text)
  if (point !== null) {
    const indent = indentOf(line)
    // A point right after a deeper block closes a subtest: it summarises children already counted.
    const isSummary = previousIndent > indent
    if (!isSummary) {
      if (/#\s*(SKIP|TODO)\b/i.test(text)) skipped++
      else if (point[1] === 'ok') passed++
      else failed++
    }
    previousIndent = indent
    continue
  }
  if (/^\d+\.\.\d+/.test(text)) { previousIndent = indentOf(line); continue }
  previousIndent = indentOf(line)
}
if (skipped > 0) console.log(`${skipped} skipped or todo`)
console.log(`${passed} passed, ${failed} failed`)
