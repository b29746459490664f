/** An answer other than 200: its status, the message the client reads, and headers such as Retry-After. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A header value or name cut short for an error message. */
export function clip(value: string): string {
  return value.length > 64 ? `${value.slice(0, 64)}...` : value;
}
