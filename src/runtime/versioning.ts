/** How a worker joins its Worker Deployment: one place for the worker entry points and the tests. */
import type { WorkerDeploymentOptions } from '@temporalio/worker';

export function deploymentOptions(deploymentName: string, buildId: string): WorkerDeploymentOptions {
  return {
    useWorkerVersioning: true,
    version: { deploymentName, buildId },
    // Runs stay on the build they started on, from preprocessing through deployment; the serving
    // phase moves to the current build at continue-as-new.
    defaultVersioningBehavior: 'PINNED',
  };
}
