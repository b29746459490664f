import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { TASK_QUEUES } from '../../src/common/constants';
import { SHUTDOWN_TIMES } from '../../src/runtime/shutdown-times';
import { ROOT } from '../helpers/global';

interface Deployment {
  kind: string;
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    template: {
      spec: {
        nodeSelector?: Record<string, string>;
        tolerations?: { key: string; operator: string; value: string; effect: string }[];
        terminationGracePeriodSeconds?: number;
        containers: {
          command: string[];
          resources: { requests: { cpu: string; memory: string } };
          livenessProbe?: { httpGet: { path: string; port: string } };
          readinessProbe?: { httpGet: { path: string; port: string } };
          ports?: { name: string; containerPort: number }[];
        }[];
      };
    };
  };
}

describe('k8s base manifests', () => {
  const dir = join(ROOT, 'k8s', 'base');
  const kustomization = load(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  const docs = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .map((f) => load(readFileSync(join(dir, f), 'utf8')) as Deployment);
  const deployments = docs.filter((d) => d.kind === 'Deployment');

  it('lists every manifest in the kustomization', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    assert.deepEqual([...kustomization.resources].sort(), files.sort());
  });

  it('has exactly one worker Deployment per task queue, running that queue entry point', () => {
    const byQueue = new Map(deployments.map((d) => [d.metadata.labels['temporal.io/task-queue'], d]));
    assert.equal(deployments.length, Object.keys(TASK_QUEUES).length);
    for (const [name, queue] of Object.entries(TASK_QUEUES)) {
      const d = byQueue.get(queue);
      assert.ok(d, `no Deployment for ${queue}`);
      assert.deepEqual(d.spec.template.spec.containers[0]!.command, ['node', `dist/src/workers/${name}.js`]);
      const { requests } = d.spec.template.spec.containers[0]!.resources;
      assert.ok(requests.cpu && requests.memory, `${d.metadata.name} has no resource requests`);
    }
  });

  it('pins the training worker to the t3_large pool and tolerates its taint', () => {
    const training = deployments.find((d) => d.metadata.labels['temporal.io/task-queue'] === TASK_QUEUES.training)!;
    assert.deepEqual(training.spec.template.spec.nodeSelector, { role: 't3_large' });
    assert.deepEqual(training.spec.template.spec.tolerations, [
      { key: 'dedicated', operator: 'Equal', value: 't3_large', effect: 'NoSchedule' },
    ]);
    for (const other of deployments.filter((d) => d !== training)) assert.equal(other.spec.template.spec.nodeSelector, undefined);
  });

  it('gives each worker probes on its health port and a termination grace period above its shutdown force time', () => {
    const config = docs.find((d) => d.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
    for (const [name, queue] of Object.entries(TASK_QUEUES) as [keyof typeof SHUTDOWN_TIMES, string][]) {
      const spec = deployments.find((d) => d.metadata.labels['temporal.io/task-queue'] === queue)!.spec.template.spec;
      const container = spec.containers[0]!;
      assert.deepEqual(container.livenessProbe?.httpGet, { path: '/healthz', port: 'health' }, name);
      assert.deepEqual(container.readinessProbe?.httpGet, { path: '/readyz', port: 'health' }, name);
      assert.deepEqual(container.ports, [
        { name: 'health', containerPort: Number(config.data.WORKER_HEALTH_PORT) },
        { name: 'metrics', containerPort: Number(config.data.WORKER_METRICS_PORT) },
      ]);
      // Kubernetes kills the pod at the end of the period: the worker must have stopped by then.
      assert.ok(spec.terminationGracePeriodSeconds! >= SHUTDOWN_TIMES[name].forceSeconds + 10, `${name}: grace period`);
    }
    assert.equal(config.data.WORKER_HTTP_HOST, '0.0.0.0');
  });
});
