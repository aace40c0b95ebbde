// Summarises V8 CPU profiles (node --cpu-prof, BENCH_CPU_PROF or INPROC_PROF): self and total
// time by function, the "where the time goes" table of RESULTS.md.
// Usage: node bench/profile.js [--rows N] <file.cpuprofile>...   (several files are added up)
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'

const args = process.argv.slice(2)
const rowsAt = args.indexOf('--rows')
const rows = rowsAt === -1 ? 30 : Number(args.splice(rowsAt, 2)[1])
if (args.length === 0) throw new Error('usage: node bench/profile.js [--rows N] <file.cpuprofile>...')

const self = new Map()
const total = new Map()
let busy = 0
for (const file of args) {
  const { nodes, samples, timeDeltas } = JSON.parse(readFileSync(file, 'utf8'))
  const byId = new Map(nodes.map(node => [node.id, node]))
  const parent = new Map()
  for (const node of nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const nameOf = ({ callFrame }) => `${callFrame.functionName || '(anonymous)'}${callFrame.url === '' ? '' : ` (${basename(callFrame.url)}:${callFrame.lineNumber + 1})`}`
  for (let i = 0; i < samples.length; i++) {
    const us = timeDeltas[i + 1] ?? 0
    const leaf = byId.get(samples[i])
    const name = nameOf(leaf)
    if (name === '(idle)') continue
    busy += us
    self.set(name, (self.get(name) ?? 0) + us)
    // Total time: each function on the sampled stack once, however deep it recurses.
    const seen = new Set()
    for (let id = samples[i]; id !== undefined; id = parent.get(id)) {
      const frame = nameOf(byId.get(id))
      if (seen.has(frame)) continue
      seen.add(frame)
      total.set(frame, (total.get(frame) ?? 0) + us)
    }
  }
}
const pct = us => `${(100 * us / busy).toFixed(1)} %`
console.log(`Busy time: ${(busy / 1000).toFixed(0)} ms\n`)
console.log('| function (self) | self | total |\n|---|---:|---:|')
for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, rows)) console.log(`| ${name} | ${pct(us)} | ${pct(total.get(name) ?? 0)} |`)
console.log('\n| function (total, incl. callees) | total |\n|---|---:|')
for (const [name, us] of [...total].filter(([name]) => name !== '(root)').sort((a, b) => b[1] - a[1]).slice(0, rows)) console.log(`| ${name} | ${pct(us)} |`)
