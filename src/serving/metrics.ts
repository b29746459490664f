/**
 * The inference server's Prometheus metrics (GET /metrics, text format 0.0.4): requests by route
 * and status, the latency of invocations, and the model calls they were batched into. The server
 * runs without a Temporal runtime, so it keeps these few series itself.
 */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class ServingMetrics {
  private readonly requests = new Map<string, number>();
  private readonly bucketCounts = new Array<number>(BUCKETS.length).fill(0);
  private latencySum = 0;
  private latencyCount = 0;
  private modelCalls = 0;
  private modelInstances = 0;

  /** One call of the model on `instances` images: requests batched together share one. */
  modelCall(instances: number): void {
    this.modelCalls++;
    this.modelInstances += instances;
  }

  observe(route: string, status: number, seconds: number): void {
    const key = `route="${route}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    if (route !== 'POST /invocations' || status !== 200) return;
    BUCKETS.forEach((le, i) => seconds <= le && this.bucketCounts[i]!++);
    this.latencySum += seconds;
    this.latencyCount++;
  }

  render(version: string | undefined): string {
    const lines = [
      '# HELP serving_requests_total Requests answered, by route and status.',
      '# TYPE serving_requests_total counter',
      ...[...this.requests].map(([labels, n]) => `serving_requests_total{${labels}} ${n}`),
      '# HELP serving_invocation_seconds Latency of successful POST /invocations.',
      '# TYPE serving_invocation_seconds histogram',
      ...BUCKETS.map((le, i) => `serving_invocation_seconds_bucket{le="${le}"} ${this.bucketCounts[i]}`),
      `serving_invocation_seconds_bucket{le="+Inf"} ${this.latencyCount}`,
      `serving_invocation_seconds_sum ${this.latencySum}`,
      `serving_invocation_seconds_count ${this.latencyCount}`,
      '# HELP serving_model_calls_total Calls of the model; concurrent requests are batched into shared calls.',
      '# TYPE serving_model_calls_total counter',
      `serving_model_calls_total ${this.modelCalls}`,
      '# HELP serving_model_instances_total Images the model was called on (divided by the calls: the mean batch).',
      '# TYPE serving_model_instances_total counter',
      `serving_model_instances_total ${this.modelInstances}`,
      '# HELP serving_model_info The model version being served.',
      '# TYPE serving_model_info gauge',
      `serving_model_info{version="${version ?? ''}"} 1`,
    ];
    return `${lines.join('\n')}\n`;
  }
}
