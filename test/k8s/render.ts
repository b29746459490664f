/** Renders and validates the kustomize overlays offline, as `kubectl apply -k` would send them. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv from 'ajv';
import { loadAll } from 'js-yaml';
import { ROOT } from '../helpers/global';

export const KUBERNETES_VERSION = '1.32.0';

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

/** `kubectl kustomize` (kustomize v5 inside kubectl), else kustomize (on the PATH, or built by setup into .venv/bin). */
export function render(dir: string): Manifest[] {
  const tries: [string, string[]][] = [
    ['kubectl', ['kustomize', dir]],
    ['kustomize', ['build', dir]],
    [join(ROOT, '.venv', 'bin', 'kustomize'), ['build', dir]],
  ];
  let out: SpawnSyncReturns<string> | undefined;
  for (const [bin, args] of tries) {
    out = spawnSync(bin, args, { encoding: 'utf8' });
    if (out.error === undefined) break;
  }
  if (!out || out.error) throw new Error('rendering the manifests needs kubectl (with kustomize) or kustomize: run npm run setup');
  if (out.status !== 0) throw new Error(`kustomize failed for ${dir}:\n${out.stderr}`);
  return (loadAll(out.stdout) as Manifest[]).filter(Boolean);
}

/** Errors of the Kubernetes schemas (kubernetes-validate --strict), one line each; custom kinds are skipped. */
export function validateBuiltIn(manifests: Manifest[]): string[] {
  const file = join(mkdtempSync(join(tmpdir(), 'k8s-')), 'manifests.yaml');
  writeFileSync(file, manifests.map((m) => JSON.stringify(m)).join('\n---\n'));
  const bin = join(ROOT, '.venv', 'bin', 'kubernetes-validate');
  const run = spawnSync(bin, ['-k', KUBERNETES_VERSION, '--strict', '--quiet', '--no-warn', file], { encoding: 'utf8' });
  if (run.error) throw new Error(`${bin} is missing: run npm run setup`);
  return `${run.stdout}${run.stderr}`.split('\n').filter((l) => l.startsWith('ERROR'));
}

const ajv = new Ajv({ allErrors: true, strict: false });
const schemas: Record<string, ReturnType<typeof ajv.compile>> = Object.fromEntries(
  ['WorkerDeployment', 'Connection'].map((kind) => [
    kind,
    ajv.compile(JSON.parse(readFileSync(join(ROOT, 'k8s', 'schemas', `temporal.io_v1alpha1_${kind}.json`), 'utf8'))),
  ]),
);

// @kubernetes-models/* are ES modules only; this keeps TypeScript's CommonJS output from turning
// the import into a require().
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<Record<string, unknown>>;

/** Errors of the custom resources: KEDA's published models, and the Worker Controller's schemas in k8s/schemas. */
export async function validateCustom(manifests: Manifest[]): Promise<string[]> {
  const errors: string[] = [];
  const where = (m: Manifest) => `${m.kind}/${m.metadata.name}`;
  for (const m of manifests) {
    if (m.apiVersion === 'keda.sh/v1alpha1') {
      const models = await importEsm('@kubernetes-models/keda/keda.sh/v1alpha1');
      const Model = models[m.kind] as (new (o: unknown) => { validate(): void }) | undefined;
      if (!Model) errors.push(`${where(m)}: no KEDA model for this kind`);
      else
        try {
          new Model(m).validate();
        } catch (err) {
          errors.push(`${where(m)}: ${(err as Error).message}`);
        }
    } else if (m.apiVersion === 'temporal.io/v1alpha1') {
      const validate = schemas[m.kind];
      if (!validate) errors.push(`${where(m)}: no schema for this kind`);
      else if (!validate(m)) errors.push(`${where(m)}: ${ajv.errorsText(validate.errors)}`);
      // Its pod template is a Deployment's: checked by the Kubernetes schema.
      const template = (m.spec as { template?: { metadata?: { labels?: Record<string, string> } } } | undefined)?.template;
      if (m.kind === 'WorkerDeployment' && template) {
        const asDeployment: Manifest = {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: m.metadata.name },
          spec: { selector: { matchLabels: template.metadata?.labels ?? {} }, template },
        };
        errors.push(...validateBuiltIn([asDeployment]).map((e) => `${where(m)} spec.template: ${e}`));
      }
    }
  }
  return errors;
}
