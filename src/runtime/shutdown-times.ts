/**
 * How long each worker takes to stop after SIGTERM. Kubernetes kills a pod
 * terminationGracePeriodSeconds after SIGTERM, so each Deployment's period is above its worker's
 * force time (test/k8s/manifests.test.ts checks it).
 */
export interface ShutdownTimes {
  /** In-flight activities get this long to finish before they are cancelled. */
  graceSeconds: number;
  /** After this the worker stops whatever is still running. */
  forceSeconds: number;
}

export const SHUTDOWN_TIMES = {
  // Registry calls are short; a deploy heartbeats and resumes its wait on the next worker.
  pipeline: { graceSeconds: 30, forceSeconds: 50 },
  // A shard in flight gets time to be written whole; complete shards are kept for the retry.
  data: { graceSeconds: 60, forceSeconds: 100 },
  // A training is asked at once to checkpoint after its current batch and end its attempt; the
  // retry resumes from that checkpoint on another worker. The force time leaves room for a slow
  // batch (ResNet50 at 224 px) and the checkpoint upload.
  training: { graceSeconds: 0, forceSeconds: 150 },
} as const satisfies Record<string, ShutdownTimes>;
