/**
 * What the NBD export needs from the volume: the session never sees the
 * journal or the replication state, only this. Errors are thrown as
 * BlockrepError; `nbdErrno()` maps them to NBD error numbers.
 */
export interface BlockEngine {
  readonly size: number
  readonly blockSize: number
  /** export name (served under "" as well) */
  readonly name: string
  /** re-checked per request: a primary demoted mid-session refuses writes with EPERM */
  isReadOnly(): boolean
  read(offset: number, length: number): Promise<Buffer>
  /** resolves once durable as the replication protocol promises when fua, else once acknowledged */
  write(offset: number, data: Buffer, opts: { fua: boolean }): Promise<void>
  writeZeroes(offset: number, length: number, opts: { fua: boolean }): Promise<void>
  trim(offset: number, length: number): Promise<void>
  /** every write acknowledged before it is durable */
  flush(): Promise<void>
}
