import { InfoType, Option, OptionName, OptReply, TransFlag, nameOf } from './constants.js'
import {
  encodeExportNameReply, encodeInfoBlockSize, encodeInfoExport, encodeOptionReply, encodeServerEntry,
  parseInfoRequest,
} from './codec.js'
import type { OptionFrame } from './codec.js'

/** What option haggling needs to know about the one export. */
export interface ExportView {
  readonly name: string
  readonly size: number
  readonly blockSize: number
  /** evaluated when answered: read-only may change between connections */
  transmissionFlags(): number
}

export interface HandshakeContext {
  export: ExportView
  fixedNewstyle: boolean
  noZeroes: boolean
  /** advertised as the maximum block size */
  maxPayload: number
}

/** The session's next step after an option, with the bytes to send first. */
export type OptionAction =
  | { next: 'options'; send: Buffer[] }
  | { next: 'transmission'; send: Buffer[]; name: string }
  /** graceful close after sending (NBD_OPT_ABORT) */
  | { next: 'close'; send: Buffer[]; reason: string }
  /** hard disconnect, nothing sent */
  | { next: 'disconnect'; reason: string }

/** HAS_FLAGS plus everything the session implements; READ_ONLY and CAN_MULTI_CONN as given. */
export function transmissionFlags(readOnly: boolean, multiConn: boolean): number {
  let flags = TransFlag.HAS_FLAGS | TransFlag.SEND_FLUSH | TransFlag.SEND_FUA | TransFlag.SEND_TRIM |
    TransFlag.SEND_WRITE_ZEROES
  if (multiConn) flags |= TransFlag.CAN_MULTI_CONN
  if (readOnly) flags |= TransFlag.READ_ONLY
  return flags
}

/** The export is served under its own name and under the default name "". */
export function knownExport(view: ExportView, name: string): boolean {
  return name === '' || name === view.name
}

function reply(option: number, type: number, message?: string): Buffer {
  return encodeOptionReply(option, type, message === undefined ? undefined : Buffer.from(message))
}

/** Answer one option of fixed-newstyle haggling. Pure: no I/O, no state. */
export function answerOption(f: OptionFrame, ctx: HandshakeContext): OptionAction {
  const view = ctx.export
  switch (f.option) {
    case Option.EXPORT_NAME: {
      const name = f.data.toString('utf8')
      // this option cannot carry an error: the spec says terminate
      if (!knownExport(view, name)) return { next: 'disconnect', reason: `unknown export "${name}"` }
      return { next: 'transmission', name, send: [encodeExportNameReply(view.size, view.transmissionFlags(), ctx.noZeroes)] }
    }
    case Option.ABORT:
      return { next: 'close', reason: 'client abort', send: [reply(f.option, OptReply.ACK)] }
    case Option.LIST:
      if (f.data.length !== 0) {
        return { next: 'options', send: [reply(f.option, OptReply.ERR_INVALID, 'NBD_OPT_LIST takes no data')] }
      }
      return {
        next: 'options',
        send: [
          encodeOptionReply(f.option, OptReply.SERVER, encodeServerEntry(view.name)),
          encodeOptionReply(f.option, OptReply.ACK),
        ],
      }
    case Option.INFO:
    case Option.GO:
      return answerInfo(f, ctx)
    default:
      // STRUCTURED_REPLY, STARTTLS, meta contexts, anything newer: the client falls back
      if (!ctx.fixedNewstyle) return { next: 'disconnect', reason: 'option needs fixed newstyle' }
      return { next: 'options', send: [reply(f.option, OptReply.ERR_UNSUP, `${nameOf(OptionName, f.option)} not supported`)] }
  }
}

function answerInfo(f: OptionFrame, ctx: HandshakeContext): OptionAction {
  const view = ctx.export
  const req = parseInfoRequest(f.data)
  if (req === undefined) {
    return { next: 'options', send: [reply(f.option, OptReply.ERR_INVALID, 'malformed info request')] }
  }
  if (!knownExport(view, req.name)) {
    return { next: 'options', send: [reply(f.option, OptReply.ERR_UNKNOWN, `no export named "${req.name}"`)] }
  }
  // INFO_EXPORT always, even if not requested: qemu fails without it
  const send = [encodeOptionReply(f.option, OptReply.INFO, encodeInfoExport(view.size, view.transmissionFlags()))]
  if (req.infos.includes(InfoType.BLOCK_SIZE)) {
    const preferred = Math.min(Math.max(view.blockSize, 1), ctx.maxPayload)
    send.push(encodeOptionReply(f.option, OptReply.INFO, encodeInfoBlockSize(1, preferred, ctx.maxPayload)))
  }
  send.push(encodeOptionReply(f.option, OptReply.ACK))
  return f.option === Option.GO ? { next: 'transmission', name: req.name, send } : { next: 'options', send }
}
