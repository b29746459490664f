/**
 * What an inference server runs a model with: the request bodies it turns into model input
 * (a JPEG or PNG decoded and resized, or JSON instances checked value by value), the batching of
 * concurrent requests into shared model calls, and the hot swap. ModelEngine does it on the thread
 * that calls it; the `serve` process runs one on a thread of its own (ThreadEngine), so the HTTP
 * server's event loop never waits for a decode or a model call.
 */
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import { decodeAndResize, ImageTooLargeError } from '../data/images';
import type { ModelMetadata } from '../ml/model-store';
import { loadTf } from '../ml/tf';
import { clip, HttpError } from './http-error';

export interface LoadedModel {
  model: LayersModel;
  metadata: ModelMetadata;
  /** What is being served, reported by GET /model. */
  info: ModelInfo;
}

export interface ModelInfo {
  name?: string;
  version?: string;
  modelUri: string;
}

/** What a model request names: where the model is, and the registry's name and version for it. */
export type ModelRequest = ModelInfo;

/** The served model as the HTTP side sees it: no tensors. */
export type ModelDescription = Pick<LoadedModel, 'info' | 'metadata'>;

export interface Prediction {
  label: string;
  probabilities: Record<string, number>;
}

export interface Batched {
  version?: string;
  predictions: Prediction[];
}

/** The body types an invocation may carry. */
export type BodyType = 'application/json' | 'image/jpeg' | 'image/png';

export interface InferenceEngine {
  /** The model being served, if any. */
  served(): ModelDescription | undefined;
  /** Predicts on one request's body; a body that cannot be served fails with an HttpError that says why. */
  invoke(type: BodyType, body: Buffer): Promise<Batched>;
  /** Whether `swap` is offered (POST /admin/model). */
  readonly canSwap: boolean;
  /** Loads, warms up and then serves another model; one that cannot serve fails with 422 and the served one is kept. */
  swap(request: ModelRequest): Promise<ModelInfo>;
  /** Called with the instances of every model call that serves requests (not warm-up calls). */
  onModelCall(listener: (instances: number) => void): void;
  close(): Promise<void>;
}

export interface ModelEngineOptions {
  /** Most instances one JSON request may carry (default 64). */
  maxInstances?: number;
  /** Most instances one model call takes when concurrent requests are batched together (default 32). */
  maxBatch?: number;
  /** Loads a model for a hot swap; without it there is none. */
  loadModel?: (request: ModelRequest) => Promise<LoadedModel>;
  /** Told of every model call's images (floats in [0, 1]) and the classes predicted for them: the drift sample. */
  observe?: (pixels: Float32Array, n: number, size: number, predicted: string[], model: ModelInfo) => void;
}

/** Serves a model on the calling thread. */
export class ModelEngine implements InferenceEngine {
  private current: LoadedModel | undefined;
  private readonly batcher: Batcher;
  private readonly maxInstances: number;
  private listeners: ((instances: number) => void)[] = [];

  constructor(
    initial: LoadedModel | undefined,
    private readonly options: ModelEngineOptions = {},
  ) {
    this.maxInstances = options.maxInstances ?? 64;
    if (initial) warmUp(initial);
    this.current = initial;
    this.batcher = new Batcher(options.maxBatch ?? 32, (pixels, n) => this.predict(pixels, n));
  }

  get canSwap(): boolean {
    return this.options.loadModel !== undefined;
  }

  served(): ModelDescription | undefined {
    return this.current && { info: this.current.info, metadata: this.current.metadata };
  }

  onModelCall(listener: (instances: number) => void): void {
    this.listeners.push(listener);
  }

  async invoke(type: BodyType, body: Buffer): Promise<Batched> {
    if (!this.current) throw new HttpError(503, 'no model loaded');
    const size = this.current.metadata.imageSize;
    if (type === 'image/jpeg' || type === 'image/png') {
      let pixels: Uint8Array;
      try {
        pixels = decodeAndResize(body, size);
      } catch (err) {
        if (err instanceof ImageTooLargeError) throw new HttpError(413, `${err.message}; send a smaller image`);
        throw new HttpError(400, `the body is not a decodable ${type} image; send the bytes of a JPEG or PNG file`);
      }
      const floats = new Float32Array(pixels.length);
      for (let i = 0; i < pixels.length; i++) floats[i] = pixels[i]! / 255;
      return this.batcher.run(floats, 1);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      // JSON has no NaN or Infinity: those tokens land here too.
      throw new HttpError(400, `the body is not valid JSON (${(err as Error).message}); send numbers only, no NaN or Infinity`);
    }
    const instances = (parsed as { instances?: unknown })?.instances;
    if (!Array.isArray(instances) || instances.length === 0)
      throw new HttpError(400, `expected {"instances": [...]} with at least one instance, each of shape [${size}, ${size}, 3]`);
    if (instances.length > this.maxInstances) {
      // One image not wrapped in a list looks like too many instances: its shape error says so better.
      flattenInstance(instances[0], size, new Float32Array(size * size * 3), 0, 'instances[0]');
      throw new HttpError(
        413,
        `at most ${this.maxInstances} instances per request, got ${instances.length}; send the rest in another request`,
      );
    }
    const flat = new Float32Array(instances.length * size * size * 3);
    instances.forEach((instance, i) => flattenInstance(instance, size, flat, i * size * size * 3, `instances[${i}]`));
    return this.batcher.run(flat, instances.length);
  }

  async swap(request: ModelRequest): Promise<ModelInfo> {
    if (!this.options.loadModel) throw new HttpError(404, 'not found');
    const next = await this.options.loadModel(request);
    try {
      warmUp(next);
    } catch (err) {
      next.model.dispose();
      throw new HttpError(422, `${(err as Error).message}; the served model was kept`);
    }
    // Model calls run synchronously (see Batcher), so no request is using the old model while we swap.
    const previous = this.current;
    this.current = next;
    this.batcher.relearn();
    previous?.model.dispose();
    return next.info;
  }

  async close(): Promise<void> {
    this.current?.model.dispose();
    this.current = undefined;
  }

  private predict(pixels: Float32Array, n: number): Batched {
    for (const listener of this.listeners) listener(n);
    const tf = loadTf();
    const { model, metadata, info } = this.current!;
    const size = metadata.imageSize;
    if (pixels.length !== n * size * size * 3)
      throw new HttpError(503, 'the model was swapped for one with another input size; send the request again');
    const probs = tf.tidy(() => model.predict(tf.tensor4d(pixels, [n, size, size, 3])) as Tensor);
    try {
      const rows = probs.arraySync() as number[][];
      const predictions = rows.map((row) => {
        const best = row.indexOf(Math.max(...row));
        return { label: metadata.classes[best]!, probabilities: Object.fromEntries(metadata.classes.map((c, i) => [c, row[i]!])) };
      });
      this.options.observe?.(
        pixels,
        n,
        size,
        predictions.map((p) => p.label),
        info,
      );
      return { version: info.version, predictions };
    } finally {
      probs.dispose();
    }
  }
}

/** Above this a value becomes Infinity in the model's float32 input. */
const FLOAT32_MAX = 3.4028234663852886e38;

function flattenInstance(instance: unknown, size: number, out: Float32Array, offset: number, path: string): void {
  // Each error names the first element that is wrong, and what it should be.
  const shaped = (value: unknown, length: number, at: string): unknown[] => {
    if (Array.isArray(value) && value.length === length) return value;
    throw new HttpError(
      400,
      `${path} must have shape [${size}, ${size}, 3] (rows, columns, RGB floats in [0, 1]): ${at} is ${describe(value)}, not an array of ${length}`,
    );
  };
  let o = offset;
  const rows = shaped(instance, size, path);
  for (let r = 0; r < size; r++) {
    const row = shaped(rows[r], size, `${path}[${r}]`);
    for (let c = 0; c < size; c++) {
      const px = shaped(row[c], 3, `${path}[${r}][${c}]`);
      for (let k = 0; k < 3; k++) {
        const v = px[k];
        if (typeof v !== 'number')
          throw new HttpError(400, `${path}[${r}][${c}][${k}] is ${describe(v)}; every value must be a number (RGB floats in [0, 1])`);
        // JSON.parse reads 1e400 as Infinity; 1e39 is finite but overflows float32.
        if (!(Math.abs(v) <= FLOAT32_MAX))
          throw new HttpError(400, `${path}[${r}][${c}][${k}] is out of float32 range; send RGB floats in [0, 1]`);
        out[o++] = v;
      }
    }
  }
}

/** What a JSON value is, for an error message. */
function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null) return 'null';
  if (typeof value === 'string') return `a string (${JSON.stringify(clip(value))})`;
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value} (${String(value)})`;
}

/**
 * Runs a model WARM_UP_CALLS times on one blank image before it serves. A fresh model's first
 * calls cost several times a steady one (the 224 px Basic CNN on 2 cores: 116 ms, then 29, then
 * 15-25; ResNet50 156, 70, then 44-63): the first requests would pay it, and the batch sizer would
 * take it for what a call of one image costs. It also refuses, before it replaces anything, a
 * model that cannot predict on its metadata's input size or whose outputs are not its classes.
 */
function warmUp({ model, metadata, info }: LoadedModel): void {
  const tf = loadTf();
  const size = metadata.imageSize;
  for (let i = 0; i < WARM_UP_CALLS; i++) {
    let shape: number[];
    try {
      const out = tf.tidy(() => model.predict(tf.zeros([1, size, size, 3])) as Tensor);
      shape = out.shape;
      out.dispose();
    } catch (err) {
      throw new Error(
        `${info.modelUri}: the model cannot predict on one ${size}x${size} RGB image, the size its metadata gives (${(err as Error).message})`,
      );
    }
    if (shape.length !== 2 || shape[1] !== metadata.classes.length)
      throw new Error(
        `${info.modelUri}: the model outputs shape [${shape.join(', ')}] for one image, not one probability per class of its metadata (${metadata.classes.length}: ${metadata.classes.join(', ')})`,
      );
  }
}

/** Model calls made on a model before it serves (warmUp). */
const WARM_UP_CALLS = 3;

/**
 * Batches concurrent requests into one model call. A model call blocks the event loop; requests
 * that arrive meanwhile queue up and go together in the next call, so a lone request waits for
 * nothing and a busy server makes fewer, larger calls. How large is measured, not assumed
 * (BatchSizer): at most maxBatch instances, and fewer where larger calls cost more per image.
 */
export class Batcher {
  private queue: { pixels: Float32Array; n: number; resolve: (b: Batched) => void; reject: (e: Error) => void }[] = [];
  private scheduled = false;
  private sizer: BatchSizer;

  constructor(
    private readonly maxBatch: number,
    private readonly predict: (pixels: Float32Array, n: number) => Batched,
  ) {
    this.sizer = new BatchSizer(maxBatch);
  }

  /** Forgets the measured costs (another model was loaded). */
  relearn(): void {
    this.sizer = new BatchSizer(this.maxBatch);
  }

  run(pixels: Float32Array, n: number): Promise<Batched> {
    return new Promise((resolve, reject) => {
      this.queue.push({ pixels, n, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const take: typeof this.queue = [];
    let n = 0;
    const cap = this.sizer.next();
    while (this.queue.length && (take.length === 0 || n + this.queue[0]!.n <= cap)) {
      const item = this.queue.shift()!;
      take.push(item);
      n += item.n;
    }
    try {
      const pixels = take.length === 1 ? take[0]!.pixels : new Float32Array(n * (take[0]!.pixels.length / take[0]!.n));
      if (take.length > 1) {
        let offset = 0;
        for (const item of take) {
          pixels.set(item.pixels, offset);
          offset += item.pixels.length;
        }
      }
      const started = performance.now();
      const out = this.predict(pixels, n);
      this.sizer.record(n, performance.now() - started);
      let at = 0;
      for (const item of take) {
        item.resolve({ version: out.version, predictions: out.predictions.slice(at, at + item.n) });
        at += item.n;
      }
    } catch (err) {
      for (const item of take) item.reject(err as Error);
    }
    if (this.queue.length) setImmediate(() => this.flush());
    else this.scheduled = false;
  }
}

/**
 * The batch size that serves most images per second, learnt from the model calls themselves.
 * Batching pays when a larger call costs less per image; for a large input on a small CPU it does
 * not (the Basic CNN at 224 px on 2 cores: 63 images/s one at a time, 45 at 32; npm run
 * bench:serve), and a large call only makes every request in it wait. Per power-of-two size class
 * it keeps a moving average of milliseconds per image; calls may take up to the largest size of
 * the smallest class within TIE of the cheapest, or of a neighbouring class while that one is
 * unmeasured, and every EXPLORE calls of a neighbouring class, so a cost that changed is seen.
 * Before anything is measured, calls take up to maxBatch.
 */
export class BatchSizer {
  private readonly msPerImage = new Map<number, number>();
  private calls = 0;

  constructor(private readonly maxBatch: number) {}

  /** The most instances the call being made now may take. */
  next(): number {
    return this.capAt(this.calls++);
  }

  record(instances: number, ms: number): void {
    const size = sizeClass(instances);
    const perImage = ms / instances;
    const before = this.msPerImage.get(size);
    this.msPerImage.set(size, before === undefined ? perImage : before + 0.2 * (perImage - before));
  }

  private capAt(call: number): number {
    if (!this.msPerImage.size) return this.maxBatch;
    // The smallest class within TIE of the cheapest: a larger call that is not clearly cheaper per
    // image only makes its requests wait, and on a flat stretch of costs the choice slides down it.
    const cheapest = Math.min(...this.msPerImage.values());
    const best = Math.min(...[...this.msPerImage].filter(([, cost]) => cost <= cheapest * (1 + TIE)).map(([size]) => size));
    // A neighbouring class not yet measured is tried at once: a burst after light load ramps up,
    // and a first large call walks down, within a few calls. Every EXPLORE calls a neighbour,
    // larger and smaller in turn, is measured again, so a cost that changed moves the choice one
    // class at a time: the cost per image has one valley over the batch size. Re-measuring every
    // class in turn instead cost a busy server 15 % of its images per second where one image per
    // call is cheapest (the costs in test/serving/server.test.ts).
    const up = best * 2 <= this.maxBatch ? best * 2 : undefined;
    const down = best > 1 ? best / 2 : undefined;
    let size = [up, down].find((c) => c !== undefined && !this.msPerImage.has(c)) ?? best;
    if (size === best && call % EXPLORE === 0) size = (up && (!down || Math.floor(call / EXPLORE) % 2 === 0) ? up : down) ?? best;
    return Math.min(this.maxBatch, 2 * size - 1);
  }
}

/** Calls between two re-measurements of a neighbouring size class. */
const EXPLORE = 16;

/** Costs per image this close (relative) count as equal. */
const TIE = 0.03;

/** The power of two at or below n. */
const sizeClass = (n: number): number => 2 ** Math.floor(Math.log2(n));
