import type { FastifyReply } from 'fastify'
import { problemHeaders } from '../entra/problems.js'

export function sendProblemReply (reply: FastifyReply, status: number, challenge: string, body: object): FastifyReply {
  return reply
    .code(status)
    .headers(problemHeaders(status, challenge))
    .header('cache-control', 'no-store')
    .type('application/problem+json')
    // A Buffer, so Fastify sends the media type exactly as RFC 9457 §3 registers it (no charset).
    .send(Buffer.from(JSON.stringify(body)))
}
