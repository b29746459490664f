import { strict as assert } from 'node:assert';
import { loadConfig } from '../../src/config';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TASK_QUEUES } from '../../src/common/constants';
import { SHUTDOWN_TIMES } from '../../src/runtime/shutdown-times';
import { ROOT } from '../helpers/global';
import { render, validateBuiltIn, validateCustom, type Manifest } from './render';

interface Container {
  name: string;
  command?: string[];
  env?: { name: string; value?: string }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  livenessProbe?: { httpGet?: { path: string; port: string } };
  readinessProbe?: { httpGet?: { path: string; port: string } };
  ports?: { name: string; containerPort: number }[];
}
interface PodSpec {
  serviceAccountName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: Record<string, string>[];
  terminationGracePeriodSeconds?: number;
  securityContext?: Record<string, unknown>;
  containers: Container[];
}
const podSpec = (m: Manifest) => (m.spec as { template: { spec: PodSpec } }).template.spec;
const mebibytes = (q: string): number => {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`unexpected quantity ${q}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
};

const OVERLAYS = ['base', 'overlays/eks', 'overlays/local', 'overlays/worker-controller'];
const CLUSTER_OVERLAYS = ['overlays/eks', 'overlays/local', 'overlays/worker-controller'];
const rendered = new Map(OVERLAYS.map((o) => [o, render(join(ROOT, 'k8s', o))]));
/** The worker of each task queue: a Deployment, or the controller's WorkerDeployment. */
const workers = (manifests: Manifest[]) =>
  manifests.filter((m) => ['Deployment', 'WorkerDeployment'].includes(m.kind) && m.metadata.labels?.['temporal.io/task-queue']);

describe('Kubernetes manifests (kustomize, validated offline against the Kubernetes 1.32 schemas)', () => {
  for (const overlay of OVERLAYS) {
    describe(overlay, () => {
      const manifests = rendered.get(overlay)!;

      it('validates strictly: built-in kinds against Kubernetes 1.32, custom resources against their schemas', async () => {
        assert.deepEqual(validateBuiltIn(manifests), []);
        assert.deepEqual(await validateCustom(manifests), []);
      });

      it('runs exactly one worker per task queue, from its entry point, with resources set', () => {
        const all = workers(manifests);
        assert.equal(all.length, Object.keys(TASK_QUEUES).length);
        for (const [name, queue] of Object.entries(TASK_QUEUES)) {
          const found = all.filter((w) => w.metadata.labels!['temporal.io/task-queue'] === queue);
          assert.equal(found.length, 1, `one worker for ${queue}`);
          const c = podSpec(found[0]!).containers[0]!;
          assert.deepEqual(c.command, ['node', `dist/src/workers/${name}.js`]);
          assert.ok(
            c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory,
            `${name}: requests and limits`,
          );
        }
      });

      it('pins the training worker to the t3_large pool and no other worker', () => {
        for (const w of workers(manifests)) {
          const spec = podSpec(w);
          if (w.metadata.labels!['temporal.io/task-queue'] === TASK_QUEUES.training) {
            assert.deepEqual(spec.nodeSelector, { role: 't3_large' });
            assert.deepEqual(spec.tolerations, [{ key: 'dedicated', operator: 'Equal', value: 't3_large', effect: 'NoSchedule' }]);
          } else assert.equal(spec.nodeSelector, undefined);
        }
      });

      it('runs each worker non-root on a read-only root, without privileges, with probes and its own service account', () => {
        const accounts = new Set<string>();
        for (const w of workers(manifests)) {
          const spec = podSpec(w);
          const c = spec.containers[0]!;
          assert.equal(spec.securityContext?.runAsNonRoot, true, w.metadata.name);
          assert.deepEqual(spec.securityContext?.seccompProfile, { type: 'RuntimeDefault' });
          assert.deepEqual(c.securityContext, {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          });
          assert.deepEqual(c.livenessProbe?.httpGet, { path: '/healthz', port: 'health' });
          assert.deepEqual(c.readinessProbe?.httpGet, { path: '/readyz', port: 'health' });
          assert.ok(spec.serviceAccountName && !accounts.has(spec.serviceAccountName), `${w.metadata.name}: a service account of its own`);
          accounts.add(spec.serviceAccountName);
          assert.ok(manifests.some((m) => m.kind === 'ServiceAccount' && m.metadata.name === spec.serviceAccountName));
        }
      });

      it('gives each worker a disruption budget and a grace period above its shutdown force time; training memory fits its limit', () => {
        const config = manifests.find((m) => m.kind === 'ConfigMap' && m.metadata.name === 'ml-pipeline-config')!.data!;
        for (const [name, queue] of Object.entries(TASK_QUEUES) as [keyof typeof SHUTDOWN_TIMES, string][]) {
          const w = workers(manifests).find((m) => m.metadata.labels!['temporal.io/task-queue'] === queue)!;
          const spec = podSpec(w);
          assert.ok(spec.terminationGracePeriodSeconds! >= SHUTDOWN_TIMES[name].forceSeconds + 10, `${name}: grace period`);
          assert.deepEqual(spec.containers[0]!.ports, [
            { name: 'health', containerPort: Number(config.WORKER_HEALTH_PORT) },
            { name: 'metrics', containerPort: Number(config.WORKER_METRICS_PORT) },
          ]);
          const pdb = manifests.find((m) => m.kind === 'PodDisruptionBudget' && m.metadata.name === w.metadata.name);
          assert.ok(pdb, `${name}: PodDisruptionBudget`);
        }
        const training = podSpec(workers(manifests).find((m) => m.metadata.labels!['temporal.io/task-queue'] === TASK_QUEUES.training)!);
        const env = Object.fromEntries((training.containers[0]!.env ?? []).map((e) => [e.name, e.value]));
        assert.equal(env.TRAINING_CONCURRENCY, '1', 'one training at a time on a t3.large');
        // The budget is the training process's; the worker process and TensorFlow's runtime need about 1 GiB more.
        const limit = mebibytes(training.containers[0]!.resources!.limits!.memory!);
        assert.ok(
          Number(env.TRAINING_MEMORY_MB) + 1024 <= limit && limit <= 7 * 1024,
          `TRAINING_MEMORY_MB ${env.TRAINING_MEMORY_MB} within ${limit} Mi`,
        );
        assert.equal(config.WORKER_HTTP_HOST, '0.0.0.0');
      });
    });
  }

  it('sends cluster deploys to SageMaker: a local endpoint in a pod is unreachable', () => {
    for (const overlay of CLUSTER_OVERLAYS) {
      const config = rendered.get(overlay)!.find((m) => m.kind === 'ConfigMap' && m.metadata.name === 'ml-pipeline-config')!.data!;
      assert.equal(config.DEFAULT_DEPLOY_TARGET, 'sagemaker', overlay);
    }
  });

  it('gives each worker its own IAM role on EKS, and the policies grant each only its part', () => {
    const accounts = rendered.get('overlays/eks')!.filter((m) => m.kind === 'ServiceAccount');
    const roles = accounts.map((a) => a.metadata.annotations?.['eks.amazonaws.com/role-arn']);
    assert.equal(new Set(roles).size, 3);
    assert.ok(roles.every((r) => r && /^arn:aws:iam::\d{12}:role\/cnn-skin-cancer-worker-(pipeline|data|training)$/.test(r)));
    type Statement = { Action: string | string[]; Resource: string | string[]; Condition?: unknown };
    const policy = (name: string) =>
      (JSON.parse(readFileSync(join(ROOT, 'k8s', 'iam', `worker-${name}.json`), 'utf8')) as { Statement: Statement[] }).Statement;
    const actions = (name: string) => policy(name).flatMap((s) => [s.Action].flat());
    assert.ok(!actions('data').some((a) => a.startsWith('sagemaker:') || a.startsWith('iam:')));
    assert.ok(!actions('training').some((a) => a.startsWith('sagemaker:') || a.startsWith('iam:')));
    const passRole = policy('pipeline').find((s) => [s.Action].flat().includes('iam:PassRole'))!;
    assert.match(String(passRole.Resource), /:role\/cnn-skin-cancer-sagemaker-execution$/, 'PassRole for the execution role only');
    assert.deepEqual(passRole.Condition, { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } });
    assert.ok(
      policy('pipeline').every((s) => [s.Action].flat().every((a) => !a.endsWith(':*'))),
      'no wildcard actions',
    );
    // Exactly the SageMaker calls the code makes: one per command it sends or pages through.
    const api = readFileSync(join(ROOT, 'src', 'sagemaker', 'api.ts'), 'utf8');
    const called = [
      ...new Set([...api.matchAll(/(?:new (\w+)Command\(|paginate(\w+)\()/g)].map((m) => `sagemaker:${m[1] ?? m[2]}`)),
    ].sort();
    const granted = [...new Set(actions('pipeline').filter((a) => a.startsWith('sagemaker:')))].sort();
    assert.deepEqual(granted, called);
    // New endpoint configs only on the instance types the configuration allows (SAGEMAKER_INSTANCE_TYPES).
    const create = policy('pipeline').filter((s) => [s.Action].flat().includes('sagemaker:CreateEndpointConfig'));
    assert.equal(create.length, 1);
    assert.deepEqual(create[0]!.Condition, {
      'ForAllValues:StringEquals': { 'sagemaker:InstanceTypes': [loadConfig({}).sagemaker.instanceType] },
      Null: { 'sagemaker:InstanceTypes': 'false' },
    });
  });

  it('scales the training worker on its backlog with KEDA, down to zero while nothing runs', () => {
    const scaled = rendered.get('overlays/eks')!.find((m) => m.kind === 'ScaledObject')!;
    const spec = scaled.spec as {
      scaleTargetRef: { name: string };
      minReplicaCount: number;
      triggers: { type: string; metadata: Record<string, string> }[];
    };
    assert.equal(spec.scaleTargetRef.name, 'worker-training');
    assert.equal(spec.minReplicaCount, 0);
    assert.deepEqual(
      spec.triggers.map((t) => t.type),
      ['temporal', 'prometheus'],
    );
    assert.equal(spec.triggers[0]!.metadata.taskQueue, TASK_QUEUES.training);
  });

  it('rejects a broken manifest: a misspelt field, a wrong type, a bad custom resource', async () => {
    const base = rendered.get('base')!;
    const deployment = structuredClone(base.find((m) => m.kind === 'Deployment')!);
    (deployment.spec as Record<string, unknown>).replica = 2;
    assert.match(validateBuiltIn([deployment]).join('\n'), /'replica' was unexpected/);
    const pdb = structuredClone(base.find((m) => m.kind === 'PodDisruptionBudget')!);
    (pdb.spec as Record<string, unknown>).maxUnavailable = [1];
    assert.equal(validateBuiltIn([pdb]).length, 1);
    const wd = structuredClone(rendered.get('overlays/worker-controller')!.find((m) => m.kind === 'WorkerDeployment')!);
    (wd.spec as { rollout: { strategy: string } }).rollout.strategy = 'Gradual';
    assert.match((await validateCustom([wd])).join('\n'), /must be equal to one of the allowed values/);
    const scaled = structuredClone(rendered.get('overlays/eks')!.find((m) => m.kind === 'ScaledObject')!);
    (scaled.spec as Record<string, unknown>).minReplicaCount = 'zero';
    assert.match((await validateCustom([scaled])).join('\n'), /minReplicaCount must be integer/);
  });
});
