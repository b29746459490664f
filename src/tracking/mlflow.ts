/**
 * A small typed client for the MLflow tracking and model-registry REST API (2.0 endpoints).
 * Create calls that can race with a retry are made idempotent by the callers through the
 * `...IfAbsent` helpers here.
 */
export class MlflowError extends Error {
  override readonly name = 'MlflowError';
  constructor(
    message: string,
    readonly status: number,
    readonly errorCode?: string,
  ) {
    super(message);
  }
}

export interface MlflowMetric {
  key: string;
  value: number;
  step?: number;
  timestamp?: number;
}

export interface ModelVersion {
  name: string;
  version: string;
  source: string;
  run_id?: string;
  current_stage?: string;
  status?: string;
  tags?: { key: string; value: string }[];
  aliases?: string[];
}

export type RunStatus = 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED';

export interface RunInfo {
  run_id: string;
  experiment_id: string;
  status: RunStatus;
  run_name?: string;
  artifact_uri?: string;
}

type Tags = Record<string, string>;
const tagList = (tags: Tags = {}): { key: string; value: string }[] => Object.entries(tags).map(([key, value]) => ({ key, value }));

/**
 * Delays before each retry of a call that failed transiently (unreachable, reset, 429, 5xx): about
 * 30 s in all, so an MLflow restart or a proxy's hiccup costs a wait, not a training attempt.
 */
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [500, 1000, 2000, 4000, 8000, 8000, 8000];

/**
 * Calls that create something: a retry after an answer was lost would create it twice (a second
 * run, a second registered version). They are retried only when the request cannot have reached
 * MLflow (connection refused) or a proxy in front said it did not pass it on (502/503/504); their
 * callers find what an earlier attempt made (activity-runs.ts, run-log.ts registerVersion).
 */
const CREATES = new Set(['runs/create', 'model-versions/create']);

/** Whether an MLflow call failed in a way that trying again later may fix. */
export function isTransientMlflowError(err: unknown): boolean {
  return err instanceof MlflowError && (err.status === 0 || err.status === 429 || err.status >= 500);
}

export class MlflowClient {
  private readonly base: string;
  private readonly retryDelaysMs: readonly number[];

  constructor(trackingUri: string, { retryDelaysMs = DEFAULT_RETRY_DELAYS_MS }: { retryDelaysMs?: readonly number[] } = {}) {
    this.base = trackingUri.replace(/\/+$/, '');
    this.retryDelaysMs = retryDelaysMs;
  }

  get trackingUri(): string {
    return this.base;
  }

  // --- experiments and runs -------------------------------------------------------------

  async getOrCreateExperiment(name: string): Promise<string> {
    const found = await this.call<{ experiment: { experiment_id: string } }>('GET', 'experiments/get-by-name', { experiment_name: name }, [
      'RESOURCE_DOES_NOT_EXIST',
    ]);
    if (found) return found.experiment.experiment_id;
    try {
      return (await this.call<{ experiment_id: string }>('POST', 'experiments/create', { name }))!.experiment_id;
    } catch (err) {
      // Another worker created it between our two calls.
      if (err instanceof MlflowError && err.errorCode === 'RESOURCE_ALREADY_EXISTS') return this.getOrCreateExperiment(name);
      throw err;
    }
  }

  async createRun(experimentId: string, runName: string, tags: Tags = {}): Promise<RunInfo> {
    const out = await this.call<{ run: { info: RunInfo } }>('POST', 'runs/create', {
      experiment_id: experimentId,
      run_name: runName,
      start_time: Date.now(),
      tags: tagList({ 'mlflow.runName': runName, ...tags }),
    });
    return out!.run.info;
  }

  async getRun(runId: string): Promise<{
    info: RunInfo;
    data: { metrics?: MlflowMetric[]; params?: { key: string; value: string }[]; tags?: { key: string; value: string }[] };
  }> {
    return (await this.call<{ run: never }>('GET', 'runs/get', { run_id: runId }))!.run;
  }

  async logBatch(runId: string, batch: { metrics?: MlflowMetric[]; params?: Record<string, string | number>; tags?: Tags }): Promise<void> {
    const now = Date.now();
    const metrics = (batch.metrics ?? []).map((m) => ({ key: m.key, value: m.value, step: m.step ?? 0, timestamp: m.timestamp ?? now }));
    const params = Object.entries(batch.params ?? {}).map(([key, value]) => ({ key, value: String(value) }));
    const tags = tagList(batch.tags);
    // The API takes at most 1000 metrics, 100 params and 100 tags per call.
    const calls = Math.max(Math.ceil(metrics.length / 1000), Math.ceil(params.length / 100), Math.ceil(tags.length / 100), 1);
    for (let i = 0; i < calls; i++) {
      await this.call('POST', 'runs/log-batch', {
        run_id: runId,
        metrics: metrics.slice(i * 1000, (i + 1) * 1000),
        params: params.slice(i * 100, (i + 1) * 100),
        tags: tags.slice(i * 100, (i + 1) * 100),
      });
    }
  }

  /**
   * Uploads one artifact file into a run, through the tracking server's artifact proxy (runs whose
   * artifact URI is `mlflow-artifacts:/...`, the default of `mlflow server`). Overwrites, so retries are safe.
   */
  async logArtifact(runId: string, path: string, body: string | Uint8Array, contentType = 'application/json'): Promise<void> {
    const root = (await this.getRun(runId)).info.artifact_uri ?? '';
    const match = /^mlflow-artifacts:(?:\/\/[^/]*)?\/?(.*)$/.exec(root);
    if (!match)
      throw new MlflowError(
        `run ${runId} stores artifacts at '${root}', which this client cannot write (start mlflow server with artifact serving)`,
        0,
      );
    const url = `${this.base}/api/2.0/mlflow-artifacts/artifacts/${match[1]!.replace(/\/+$/, '')}/${path}`;
    // A PUT overwrites: always safe to repeat.
    await this.withRetries(true, async () => {
      let res: Response;
      try {
        res = await fetch(url, { method: 'PUT', headers: { 'content-type': contentType }, body, signal: AbortSignal.timeout(60_000) });
      } catch (err) {
        throw unreachable(this.base, err);
      }
      if (!res.ok)
        throw new MlflowError(`MLflow artifact upload ${path} failed (${res.status}): ${(await res.text()).slice(0, 300)}`, res.status);
    });
  }

  async setRunStatus(runId: string, status: RunStatus): Promise<void> {
    await this.call('POST', 'runs/update', { run_id: runId, status, ...(status === 'RUNNING' ? {} : { end_time: Date.now() }) });
  }

  async searchRuns(experimentId: string, filter: string): Promise<RunInfo[]> {
    const out = await this.call<{ runs?: { info: RunInfo }[] }>('POST', 'runs/search', {
      experiment_ids: [experimentId],
      filter,
      max_results: 1000,
    });
    return (out!.runs ?? []).map((r) => r.info);
  }

  // --- model registry --------------------------------------------------------------------

  async createRegisteredModelIfAbsent(name: string, tags: Tags = {}): Promise<void> {
    await this.call('POST', 'registered-models/create', { name, tags: tagList(tags) }, ['RESOURCE_ALREADY_EXISTS']);
  }

  async createModelVersion(name: string, source: string, runId: string, tags: Tags = {}): Promise<ModelVersion> {
    const out = await this.call<{ model_version: ModelVersion }>('POST', 'model-versions/create', {
      name,
      source,
      run_id: runId,
      tags: tagList(tags),
    });
    return out!.model_version;
  }

  async searchModelVersions(filter: string): Promise<ModelVersion[]> {
    const out = await this.call<{ model_versions?: ModelVersion[] }>('GET', 'model-versions/search', { filter, max_results: '1000' });
    return out!.model_versions ?? [];
  }

  async getModelVersion(name: string, version: string): Promise<ModelVersion | undefined> {
    const out = await this.call<{ model_version: ModelVersion }>('GET', 'model-versions/get', { name, version }, [
      'RESOURCE_DOES_NOT_EXIST',
    ]);
    return out?.model_version;
  }

  async getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion | undefined> {
    const out = await this.call<{ model_version: ModelVersion }>('GET', 'registered-models/alias', { name, alias }, [
      'RESOURCE_DOES_NOT_EXIST',
      'INVALID_PARAMETER_VALUE',
    ]);
    return out?.model_version;
  }

  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.call('POST', 'registered-models/alias', { name, alias, version });
  }

  async setModelVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
    await this.call('POST', 'model-versions/set-tag', { name, version, key, value });
  }

  async transitionStage(
    name: string,
    version: string,
    stage: 'Staging' | 'Production' | 'Archived' | 'None',
    archiveExisting: boolean,
  ): Promise<void> {
    await this.call('POST', 'model-versions/transition-stage', { name, version, stage, archive_existing_versions: archiveExisting });
  }

  // --- transport -----------------------------------------------------------------------

  /** Returns undefined when the answer's error code is one of `tolerated`. */
  private async call<T = unknown>(
    method: 'GET' | 'POST',
    path: string,
    body: Record<string, unknown>,
    tolerated: string[] = [],
  ): Promise<T | undefined> {
    return this.withRetries(!CREATES.has(path), () => this.callOnce<T>(method, path, body, tolerated));
  }

  /**
   * Runs `attempt` again after each delay while it fails transiently. A non-idempotent call is
   * repeated only when it surely did not happen: refused connection, or 502/503/504 (see CREATES).
   */
  private async withRetries<T>(idempotent: boolean, attempt: () => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      try {
        return await attempt();
      } catch (err) {
        const retry =
          i < this.retryDelaysMs.length &&
          isTransientMlflowError(err) &&
          (idempotent || [502, 503, 504].includes((err as MlflowError).status) || (err as MlflowError).errorCode === 'ECONNREFUSED');
        if (!retry) throw err;
        await new Promise((r) => setTimeout(r, this.retryDelaysMs[i]));
      }
    }
  }

  private async callOnce<T>(
    method: 'GET' | 'POST',
    path: string,
    body: Record<string, unknown>,
    tolerated: string[],
  ): Promise<T | undefined> {
    let url = `${this.base}/api/2.0/mlflow/${path}`;
    const init: RequestInit = { method, headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(30_000) };
    if (method === 'GET') url += `?${new URLSearchParams(body as Record<string, string>).toString()}`;
    else init.body = JSON.stringify(body);
    let res: Response;
    try {
      res = await fetch(url, init);
    } catch (err) {
      throw unreachable(this.base, err);
    }
    const text = await res.text();
    if (res.ok) return (text ? JSON.parse(text) : {}) as T;
    let code: string | undefined;
    let message = text;
    try {
      const parsed = JSON.parse(text) as { error_code?: string; message?: string };
      code = parsed.error_code;
      message = parsed.message ?? text;
    } catch {
      /* not JSON: keep the raw text */
    }
    if (code && tolerated.includes(code)) return undefined;
    throw new MlflowError(`MLflow ${method} ${path} failed (${res.status} ${code ?? ''}): ${message.slice(0, 500)}`, res.status, code);
  }
}

/** A failed fetch as an MlflowError (status 0); a refused connection keeps its code, ECONNREFUSED: nothing was sent. */
function unreachable(base: string, err: unknown): MlflowError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.message ? `${(err as Error).message}: ${cause.message}` : (err as Error).message;
  return new MlflowError(
    `MLflow at ${base} is unreachable (${detail}); is MLFLOW_TRACKING_URI right?`,
    0,
    cause?.code === 'ECONNREFUSED' ? 'ECONNREFUSED' : undefined,
  );
}

/**
 * A metric or param key MLflow accepts (letters, digits, `_ - . /` and spaces, at most 250
 * characters), for keys made from data such as class folder names.
 */
export function mlflowKey(raw: string): string {
  return raw.replace(/[^\w\-. /]/g, '_').slice(0, 250);
}
