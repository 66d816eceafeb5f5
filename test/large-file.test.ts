/**
 * Files over 2 GiB: offsets past 2^31 are read and streamed correctly. The file is sparse (a 2.4 GB tensor of
 * zeros that takes no disk space) with a small tensor after it, whose bytes must arrive intact.
 */
import { open, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { fileSource } from '../engine/adapters/node.js';
import { openReader, readHeader, streamTensorData } from '../engine/gguf/reader.js';
import { ByteBuilder } from '../engine/gguf/writer.js';
import { GGUFValueType, GGMLType } from '../engine/gguf/types.js';

it('reads and streams a tensor that starts 2.4 GB into a sparse file', async () => {
  const bigElems = 600_000_000; // 2.4e9 bytes of F32
  const smallOffset = Math.ceil((bigElems * 4) / 32) * 32;
  const h = new ByteBuilder()
    .u32(0x46554747).u32(3).u64(2).u64(1)
    .string('general.architecture').u32(GGUFValueType.STRING).string('test')
    .string('big').u32(1).u64(bigElems).u32(GGMLType.F32).u64(0)
    .string('small').u32(1).u64(8).u32(GGMLType.F32).u64(smallOffset)
    .pad(32);
  const header = h.toBytes();
  const small = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8.5]);
  const dir = await mkdtemp(join(tmpdir(), 'bmc-large-'));
  const path = join(dir, 'large.gguf');
  try {
    const fh = await open(path, 'w');
    await fh.write(header, 0, header.byteLength, 0);
    await fh.write(new Uint8Array(small.buffer), 0, 32, header.byteLength + smallOffset);
    await fh.close();

    const src = await fileSource(path);
    expect(src.size).toBe(header.byteLength + smallOffset + 32);
    const r = openReader(src);
    const hdr = await readHeader(r, src.name, src.size);
    const t = hdr.tensors.find((x) => x.name === 'small')!;
    expect(t.fileOffset).toBeGreaterThan(2 ** 31);
    const got = new Uint8Array(32);
    await streamTensorData(r, hdr, [t], (_t, part, at) => got.set(part, at));
    await r.close();
    expect(Array.from(new Float32Array(got.buffer))).toEqual(Array.from(small));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
