/**
 * Typed errors. Every failure the engine reports on purpose is a BmcError with a stable `code`, so callers
 * (and the CLI) can tell bad input from bugs. Messages name the file, field, tensor or limit involved.
 */
export class BmcError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A GGUF file is malformed, truncated, hostile or inconsistent. `field` names the offending part. */
export class GGUFFormatError extends BmcError {
  readonly field: string;
  readonly file: string;
  constructor(file: string, field: string, message: string) {
    super('GGUF_FORMAT', `${file}: ${field}: ${message}`);
    this.file = file;
    this.field = field;
  }
}

/** The file is well formed but asks for something this engine does not implement (architecture, tensor type, ...). */
export class UnsupportedError extends BmcError {
  constructor(message: string) {
    super('UNSUPPORTED', message);
  }
}

/** An option passed by the caller (library or CLI) is invalid. `option` names it. */
export class OptionError extends BmcError {
  readonly option: string;
  constructor(option: string, message: string) {
    super('BAD_OPTION', `option ${option}: ${message}`);
    this.option = option;
  }
}

/** The model or the KV cache does not fit the memory limit. */
export class OutOfMemoryError extends BmcError {
  readonly requested: number;
  readonly limit: number;
  constructor(what: string, requested: number, limit: number) {
    super('OUT_OF_MEMORY', `${what}: needs ${formatBytes(requested)} but the memory limit is ${formatBytes(limit)}`);
    this.requested = requested;
    this.limit = limit;
  }
}

/** The model source could not be read (missing file, network failure, offline without a model). */
export class SourceError extends BmcError {
  constructor(message: string) {
    super('SOURCE', message);
  }
}

/** The model was used after dispose(), or a session after its model was disposed. */
export class DisposedError extends BmcError {
  constructor(what: string) {
    super('DISPOSED', `${what} was used after dispose()`);
  }
}

/** A draft model for speculative decoding does not share the target's vocabulary (token texts or types differ). */
export class VocabMismatchError extends BmcError {
  readonly draft: string;
  readonly target: string;
  constructor(draft: string, target: string, detail: string) {
    super('VOCAB_MISMATCH', `draft model ${draft} and target model ${target} have different vocabularies: ${detail}`);
    this.draft = draft;
    this.target = target;
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}
