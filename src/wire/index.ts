export * from './messages.js'
export * from './frame-codec.js'
export * from './validate.js'
export * from './transport.js'
