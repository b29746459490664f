/**
 * Fencing between the attempts of one training. A worker cut off from Temporal for longer than the
 * heartbeat timeout keeps its training process running while the retry runs elsewhere: two
 * attempts of one MLflow run then work side by side. Each attempt writes its model under a prefix of
 * its own (so no attempt ever rewrites files another wrote, nor those of a registered version), and
 * claims the run in a small lease object with its attempt number (Temporal's attempt numbers only
 * grow). Before every write that others rely on (a checkpoint, the model, the registration, the
 * clean-up) an attempt reads the lease: once a later attempt has claimed the run, the earlier one
 * stops with TrainingSupersededError and writes nothing more.
 */
import type { S3Store } from '../storage/s3';
import { TrainingSupersededError } from './errors';

interface Lease {
  attempt: number;
  claimedAt: string;
}

export class AttemptFence {
  constructor(
    private readonly s3: S3Store,
    readonly leaseUri: string,
    readonly attempt: number,
  ) {}

  private async holder(): Promise<number> {
    return (await this.s3.exists(this.leaseUri)) ? (await this.s3.getJson<Lease>(this.leaseUri)).attempt : 0;
  }

  /** Takes the run for this attempt, unless a later one already has it. */
  async claim(): Promise<void> {
    await this.check('start');
    await this.s3.putJson(this.leaseUri, { attempt: this.attempt, claimedAt: new Date().toISOString() } satisfies Lease);
  }

  /** Throws TrainingSupersededError when a later attempt has claimed the run. */
  async check(before: string): Promise<void> {
    const holder = await this.holder();
    if (holder > this.attempt)
      throw new TrainingSupersededError(
        `attempt ${this.attempt} was superseded by attempt ${holder} of the same training (${this.leaseUri}); it stops before it would ${before}, having changed nothing that attempt relies on`,
      );
  }
}
