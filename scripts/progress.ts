/**
 * Progress for the scripts, on stderr. On a terminal: bars redrawn in place (`\r`, clear to end of
 * line; several bars go up and redraw), fitted to the terminal's width. Elsewhere (a log file, CI):
 * one plain line when the state has changed, at most every ~10 s, and one at the end, e.g.
 * `[dataset] 1234/2637 images (47%)`.
 */

export interface Bar {
  /** Left column, e.g. a model class; may be empty. */
  label?: string;
  /** Done, from 0 to 1; undefined while not known (an empty bar). */
  fraction?: number;
  /** What is done, e.g. `1234/2637 images` or `epoch 3/8, batch 5/9`. */
  text: string;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Draw bars; default: the stream is a terminal. */
  tty?: boolean;
  /** Least time between two plain lines. */
  plainIntervalMs?: number;
}

const CLEAR_LINE = '\x1b[K';
const UP = '\x1b[1A';
const REDRAW_MS = 100;

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly plainIntervalMs: number;
  private readonly started = Date.now();
  private bars: Bar[] = [];
  /** Terminal: lines on screen now, and when they were drawn. */
  private drawn = 0;
  private drawnAt = 0;
  /** Elsewhere: the last plain line printed, and when (the clock starts with the helper). */
  private printed = '';
  private printedAt = Date.now();

  constructor(
    private readonly name: string,
    options: ProgressOptions = {},
  ) {
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.plainIntervalMs = options.plainIntervalMs ?? 10_000;
  }

  /** Show this state: redrawn on a terminal (at most every 100 ms), else printed when due. */
  update(bars: Bar[]): void {
    this.bars = bars;
    const now = Date.now();
    if (this.tty) {
      if (now - this.drawnAt >= REDRAW_MS) this.draw();
      return;
    }
    const line = this.plainLine();
    if (line !== this.printed && now - this.printedAt >= this.plainIntervalMs) this.print(line);
  }

  /** A line that stays: printed on stdout, above the bars on a terminal. */
  log(line: string): void {
    if (!this.tty) return void console.log(line);
    this.clear();
    console.log(line);
    this.draw();
  }

  /** The end: the bars stay as drawn last (the cursor goes below them); elsewhere, the last state if not printed yet. */
  end(): void {
    if (this.tty) {
      if (this.bars.length) this.draw();
      if (this.drawn) this.stream.write('\n');
      this.drawn = 0;
    } else {
      const line = this.plainLine();
      if (this.bars.length && line !== this.printed) this.print(line);
    }
    this.bars = [];
  }

  private print(line: string): void {
    this.stream.write(`${line}\n`);
    this.printed = line;
    this.printedAt = Date.now();
  }

  /** `[name] 1234/2637 images (47%)`; several bars joined with `; `. */
  private plainLine(): string {
    const bars = this.bars.map((b) =>
      [b.label, b.text, b.fraction === undefined ? '' : `(${percent(b.fraction)}%)`].filter(Boolean).join(' '),
    );
    return `[${this.name}] ${bars.join('; ')}`;
  }

  /** Cursor back to the start of the first bar line, the bar lines cleared. */
  private clear(): void {
    if (this.drawn) this.stream.write(`\r${CLEAR_LINE}${`${UP}${CLEAR_LINE}`.repeat(this.drawn - 1)}`);
    this.drawn = 0;
  }

  private draw(): void {
    const columns = Math.max(this.stream.columns || 80, 20);
    const labelWidth = Math.max(0, ...this.bars.map((b) => (b.label ?? '').length));
    const elapsed = `  ${clock(Date.now() - this.started)}`;
    const lines = this.bars.map((b, i) => {
      const head = `[${this.name}] ${labelWidth ? `${(b.label ?? '').padEnd(labelWidth)} ` : ''}`;
      const pct = b.fraction === undefined ? '   -' : `${percent(b.fraction)}%`.padStart(4);
      const tail = `${b.text}${i === 0 ? elapsed : ''}`;
      // The last column stays empty: a full line would wrap on some terminals and break the redraw.
      const room = columns - 1 - head.length - pct.length - 3;
      const width = Math.min(40, Math.max(10, room - tail.length));
      return fit(`${head}${bar(b.fraction, width)} ${pct}  ${tail}`, columns - 1);
    });
    this.clear();
    this.stream.write(lines.join('\n'));
    this.drawn = lines.length;
    this.drawnAt = Date.now();
  }
}

function percent(fraction: number): number {
  return Math.floor(Math.min(Math.max(fraction, 0), 1) * 100);
}

function bar(fraction: number | undefined, width: number): string {
  const filled = fraction === undefined ? 0 : Math.round(Math.min(Math.max(fraction, 0), 1) * width);
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}

function fit(line: string, width: number): string {
  return line.length <= width ? line : `${line.slice(0, width - 1)}…`;
}

/** `1:05`, `12:40`. */
function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
