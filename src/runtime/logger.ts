/**
 * Worker logs: one JSON object per line for log collectors (with workflowId, runId, activity and
 * model class where the SDK's or our metadata has them), or readable lines on a terminal.
 */
import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';

const LEVELS: LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];
/** Metadata keys renamed to the names used across the pipeline's logs. */
const RENAMED: Record<string, string> = { workflowRunId: 'runId', activityType: 'activity' };
/** Per-task noise that helps no reader. */
const DROPPED = new Set(['taskToken', 'isLocal']);

export class ProcessLogger implements Logger {
  private readonly min: number;

  constructor(
    private readonly format: 'json' | 'text',
    level: LogLevel = 'INFO',
    private readonly base: LogMetadata = {},
    private readonly write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  ) {
    this.min = LEVELS.indexOf(level);
  }

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    if (LEVELS.indexOf(level) < this.min) return;
    const fields: Record<string, unknown> = { ...this.base };
    for (const [key, value] of Object.entries(meta ?? {})) {
      if (!DROPPED.has(key) && value !== undefined) fields[RENAMED[key] ?? key] = value instanceof Error ? value.message : value;
    }
    const time = new Date().toISOString();
    if (this.format === 'json') this.write(JSON.stringify({ time, level: level.toLowerCase(), msg: message, ...fields }));
    else {
      const rest = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
      this.write(`${time} ${level.padEnd(5)} ${message}${rest.length ? `  ${rest.join(' ')}` : ''}`);
    }
  }

  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}

export function logFormat(setting: 'json' | 'text' | 'auto', isTty = process.stderr.isTTY === true): 'json' | 'text' {
  return setting === 'auto' ? (isTty ? 'text' : 'json') : setting;
}
