/**
 * The limits every request of a client from createS3Client runs under, whoever builds it (workers,
 * decoding and training processes, scripts): connect and idle timeouts in its HTTP handler, and a cap
 * on the size of an object it reads, checked on the response's headers before any of its body is read.
 */
import { pipeline, Transform, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { S3LimitsConfig } from '../config';

const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

/** An object over S3_MAX_OBJECT_MB; `size` is undefined when the response did not say (counted instead). */
export class S3ObjectTooLargeError extends Error {
  override readonly name = 'S3ObjectTooLargeError';
  constructor(
    readonly uri: string,
    readonly size: number | undefined,
    readonly maxBytes: number,
  ) {
    super(
      `${uri} is ${size === undefined ? 'larger than' : `${mb(size)} MB, over`} the ${mb(maxBytes)} MB an S3 read accepts: ` +
        `raise S3_MAX_OBJECT_MB to read it`,
    );
  }
}

/**
 * Every attempt of an S3 request timed out or lost its connection (the SDK names both TimeoutError);
 * the cause's message says which limit fired, and after how long.
 */
export class S3TimeoutError extends Error {
  override readonly name = 'S3TimeoutError';
  constructor(
    readonly operation: string,
    readonly uri: string,
    readonly attempts: number,
    options: { cause: unknown },
  ) {
    super(
      `S3 ${operation} ${uri} failed on all ${attempts} attempt(s): ${(options.cause as Error).message} ` +
        `(limits: S3_CONNECT_TIMEOUT_MS, S3_IDLE_TIMEOUT_MS)`,
      options,
    );
  }
}

export function isTimeout(err: unknown): boolean {
  return (err as Error | undefined)?.name === 'TimeoutError';
}

/**
 * The handler options for the client's constructor. `socketTimeout` is the handler's idle timeout
 * (socket.setTimeout: it restarts with every byte either way). Its `requestTimeout` is left unset: in
 * @smithy/node-http-handler 4.x it is a deadline that runs from the start of the request until the
 * response's headers, so an upload of a large object on a slow link would hit it, and it only logs
 * a warning unless `throwOnRequestTimeout` is set. A timed-out attempt is a TimeoutError, which the
 * SDK's standard retry strategy retries (3 attempts by default, AWS_MAX_ATTEMPTS).
 */
export function requestHandlerOptions(limits: S3LimitsConfig): { connectionTimeout: number; socketTimeout: number } {
  return { connectionTimeout: limits.connectTimeoutMs, socketTimeout: limits.idleTimeoutMs };
}

/**
 * Outside the SDK's retries (the `initialize` step): a request that failed on every attempt for a
 * timeout gets an error naming the object; a GetObject whose ContentLength is over the cap has its
 * body destroyed unread; one without a ContentLength is counted as it is read and cut off at the cap.
 */
export function applyS3Limits(client: S3Client, limits: S3LimitsConfig): void {
  const { sdkStreamMixin } = client.config;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Bucket?: string; Key?: string; Prefix?: string };
      const uri = `s3://${input.Bucket ?? ''}/${input.Key ?? input.Prefix ?? ''}`;
      const operation = context.commandName?.replace(/Command$/, '') ?? 'request';
      let result;
      try {
        result = await next(args);
      } catch (err) {
        if (!isTimeout(err)) throw err;
        const attempts = (err as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1;
        throw new S3TimeoutError(operation, uri, attempts, { cause: err });
      }
      if (operation !== 'GetObject') return result;
      const output = result.output as { Body?: Readable; ContentLength?: number };
      const body = output.Body;
      if (!body) return result;
      if (output.ContentLength !== undefined) {
        if (output.ContentLength <= limits.maxObjectBytes) return result;
        body.destroy();
        throw new S3ObjectTooLargeError(uri, output.ContentLength, limits.maxObjectBytes);
      }
      output.Body = sdkStreamMixin(countedBody(body, uri, limits.maxObjectBytes)) as unknown as Readable;
      return result;
    },
    { step: 'initialize', name: 'pipelineS3Limits' },
  );
}

/** The body, failing with S3ObjectTooLargeError once more than `maxBytes` came through. */
function countedBody(body: Readable, uri: string, maxBytes: number): Readable {
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      done(seen > maxBytes ? new S3ObjectTooLargeError(uri, undefined, maxBytes) : null, chunk);
    },
  });
  // An error on either side destroys both: the source's socket is closed, not drained. The reader
  // of `counter` gets the error; this callback has nothing to add.
  return pipeline(body, counter, () => undefined);
}
