/**
 * Every port a benchmark binds is its own default plus BENCH_PORT_OFFSET (default 0), so a
 * benchmark, or its quick mode under `npm test`, can run beside another copy of the project on
 * the same machine without either taking the other's ports.
 */
export function portOffset(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.BENCH_PORT_OFFSET ?? '';
  const offset = raw === '' ? 0 : Number(raw);
  if (!Number.isInteger(offset) || offset < 0 || offset > 50_000) {
    throw new Error(`BENCH_PORT_OFFSET must be an integer from 0 to 50000, got '${raw}'`);
  }
  return offset;
}

/** `port` moved by BENCH_PORT_OFFSET; 0 (off, or any free port) stays 0. */
export function benchPort(port: number, env: NodeJS.ProcessEnv = process.env): number {
  if (port === 0) return 0;
  const moved = port + portOffset(env);
  if (moved > 65_535) throw new Error(`port ${port} + BENCH_PORT_OFFSET ${portOffset(env)} is past 65535`);
  return moved;
}
