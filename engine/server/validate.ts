/**
 * Request-body checks for the OpenAI-style endpoints. Every failure is a RequestError naming the field (`param`), so
 * the client gets a 400 whose message says what to fix.
 */
export class RequestError extends Error {
  constructor(readonly param: string | null, message: string, readonly status = 400, readonly type = 'invalid_request_error') {
    super(message);
  }
}

export type Body = Record<string, unknown>;

const present = (b: Body, k: string) => b[k] !== undefined && b[k] !== null;

export function optNumber(b: Body, k: string, min: number, max: number): number | undefined {
  if (!present(b, k)) return undefined;
  const v = b[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new RequestError(k, `${k} must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return v;
}

export function optInt(b: Body, k: string, min: number, max: number): number | undefined {
  const v = optNumber(b, k, min, max);
  if (v !== undefined && !Number.isInteger(v)) throw new RequestError(k, `${k} must be an integer, got ${v}`);
  return v;
}

export function optBool(b: Body, k: string): boolean | undefined {
  if (!present(b, k)) return undefined;
  if (typeof b[k] !== 'boolean') throw new RequestError(k, `${k} must be true or false, got ${JSON.stringify(b[k])}`);
  return b[k] as boolean;
}

export function optString(b: Body, k: string): string | undefined {
  if (!present(b, k)) return undefined;
  if (typeof b[k] !== 'string') throw new RequestError(k, `${k} must be a string`);
  return b[k] as string;
}

/** `stop`: a string or up to 4 non-empty strings. */
export function stopStrings(b: Body): string[] {
  if (!present(b, 'stop')) return [];
  const v = b.stop;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new RequestError('stop', 'stop must be a non-empty string or an array of at most 4 non-empty strings');
  }
  return list as string[];
}

/** Options this server does not implement are accepted only at their neutral values. */
export function onlyNeutral(b: Body): void {
  const n = optInt(b, 'n', 1, 128);
  if (n !== undefined && n !== 1) throw new RequestError('n', 'n must be 1 (one choice per request)');
  for (const k of ['presence_penalty', 'frequency_penalty']) {
    const v = optNumber(b, k, -2, 2);
    if (v !== undefined && v !== 0) throw new RequestError(k, `${k} is not supported (use repeat_penalty)`);
  }
  if (present(b, 'logprobs') && b.logprobs !== false && b.logprobs !== 0) throw new RequestError('logprobs', 'logprobs are not supported');
  if (present(b, 'echo') && b.echo !== false) throw new RequestError('echo', 'echo is not supported');
  if (present(b, 'tools') && !(Array.isArray(b.tools) && b.tools.length === 0)) throw new RequestError('tools', 'tools are not supported');
  if (present(b, 'response_format')) {
    const t = (b.response_format as { type?: unknown }).type;
    if (t !== 'text') throw new RequestError('response_format', 'only response_format {"type": "text"} is supported');
  }
}
