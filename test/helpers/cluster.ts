/** The end-to-end tests' cluster: the same local cluster the demo runs. */
export { Cluster, run, waitFor, sha256File, randomWrites, freePorts, CLI, SECRET, TOKEN } from '../../src/demo/local-cluster.js'
export type { ClusterOptions, TestNode } from '../../src/demo/local-cluster.js'
