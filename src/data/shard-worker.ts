/**
 * Child-process entry of a ShardPool (see shard-pool.ts): builds shards on request. A process
 * of its own, with its own libtensorflow, so that a native crash costs one job, not the worker.
 * It reads images and writes shards itself, through a store built from the environment.
 */
import { loadConfig } from '../config';
import { loadTf } from '../ml/tf';
import { RoutingStore } from '../storage/object-store';
import { createS3Client, S3Store } from '../storage/s3';
import { buildShard, type ShardJob } from './shard-builder';

loadTf();
const store = new RoutingStore(new S3Store(createS3Client(loadConfig(process.env))));
// The pool's end is ours: no orphan outlives its parent.
process.on('disconnect', () => process.exit(0));
// A parent that has gone (the pool closed while this process started) is not an error here.
const send = (message: object): void => {
  if (process.connected) process.send!(message, undefined, undefined, () => undefined);
};
process.on('message', ({ job, stats }: { job?: ShardJob; stats?: true }) => {
  if (stats) return send({ maxRssMb: process.resourceUsage().maxRSS / 1024 });
  buildShard(store, job!).then(
    (built) => send({ built }),
    (err: Error) => send({ error: err.message }),
  );
});
send({ ready: true });
