/**
 * The kernel module is built once, importing a *shared* memory (so that a pool of workers can run it over one
 * memory). Runtimes without shared memory (no cross-origin isolation in a browser, some edge runtimes) get the same
 * binary with the import's limits flag switched to unshared: one byte in the import section, same length, same code.
 */

function readLeb(b: Uint8Array, at: number): [value: number, next: number] {
  let v = 0;
  let shift = 0;
  for (;;) {
    if (at >= b.length) throw new Error('kernel module: truncated LEB128');
    const byte = b[at++]!;
    v += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [v, at];
    shift += 7;
  }
}

/** Byte offset of the limits flag of the module's imported memory, or -1 when it imports none. */
export function memoryImportFlagOffset(b: Uint8Array): number {
  let at = 8; // magic + version
  while (at < b.length) {
    const id = b[at++]!;
    const [size, body] = readLeb(b, at);
    at = body;
    if (id === 2) {
      let [count, p] = readLeb(b, at);
      while (count-- > 0) {
        for (let s = 0; s < 2; s++) { // module and field names
          const [len, q] = readLeb(b, p);
          p = q + len;
        }
        const kind = b[p++]!;
        if (kind === 2) return p; // memory: limits flag comes next
        if (kind === 0) p = readLeb(b, p)[1]; // function: type index
        else if (kind === 1) { // table: reftype, limits
          p++;
          const flag = b[p++]!;
          p = readLeb(b, p)[1];
          if (flag & 1) p = readLeb(b, p)[1];
        } else if (kind === 3) p += 2; // global: valtype, mutability
        else throw new Error(`kernel module: unknown import kind ${kind}`);
      }
      return -1;
    }
    at = body + size;
  }
  return -1;
}

/** A copy of the module bytes whose memory import is shared (`shared` true) or not. */
export function withSharedMemoryFlag(bytes: Uint8Array, shared: boolean): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes);
  const at = memoryImportFlagOffset(out);
  if (at < 0) throw new Error('kernel module imports no memory');
  // Limits flags: bit 0 = has maximum, bit 1 = shared.
  out[at] = shared ? out[at]! | 2 : out[at]! & ~2;
  return out;
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

/** A copy of the module bytes with a custom section `name` holding `payload` appended (custom sections may go last). */
export function withCustomSection(bytes: Uint8Array, name: string, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const nameBytes = new TextEncoder().encode(name);
  const body = [...leb(nameBytes.length), ...nameBytes, ...payload];
  const out = new Uint8Array(bytes.length + 1 + leb(body.length).length + body.length);
  out.set(bytes);
  out.set([0, ...leb(body.length), ...body], bytes.length);
  return out;
}
