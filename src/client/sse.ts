/** One server-sent event. */
export interface SseEvent {
  /** the `event:` field, "message" when absent */
  event: string
  data: string
  id?: string
}

/**
 * Parse a text/event-stream body (WHATWG HTML "server-sent events"): events
 * end at a blank line, `data:` lines join with "\n", comment lines (":")
 * are keep-alives and ignored.
 */
export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder()
  let text = ''
  for await (const chunk of body) {
    text += decoder.decode(chunk, { stream: true })
    for (;;) {
      const m = /\r?\n\r?\n/.exec(text)
      if (m === null) break
      const block = text.slice(0, m.index)
      text = text.slice(m.index + m[0].length)
      const ev = parseBlock(block)
      if (ev !== null) yield ev
    }
  }
}

function parseBlock(block: string): SseEvent | null {
  let event = 'message'
  const data: string[] = []
  let id: string | undefined
  for (const line of block.split(/\r?\n/)) {
    if (line === '' || line.startsWith(':')) continue
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'event') event = value
    else if (field === 'data') data.push(value)
    else if (field === 'id') id = value
  }
  if (data.length === 0) return null
  return id === undefined ? { event, data: data.join('\n') } : { event, data: data.join('\n'), id }
}
