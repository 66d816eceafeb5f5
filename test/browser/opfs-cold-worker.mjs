// Runs in a dedicated worker of a page served by examples/web/serve.mjs (test/kv-cold-opfs.test.ts): the tiered KV
// cache with its cold rows in an OPFS file (FileSystemSyncAccessHandle) against the untiered cache, bit for bit.
import { loadModel, openOpfsColdFile } from '/dist/index.js';

// The restore's scratch (its layer-input and projection buffers) on top of the budget above.
const KVPR_EXTRA = 60000;

const same = (a, b) => {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
};

async function names() {
  const out = [];
  for await (const name of (await navigator.storage.getDirectory()).keys()) out.push(name);
  return out;
}

self.onmessage = async () => {
  try {
    const model = await loadModel(new URL('/models/stories260K.gguf', location.href), { contextLength: 256, batchSize: 16, threads: 1 });
    const vocab = model.info.hparams.nVocab;
    const plain = model.createSession();
    const cold = await openOpfsColdFile('bmc-llm-kv-test.bin');
    // 170000 for the tables, staging and pools, plus the attention-mass buffers: (8 heads + 1) f32 per position.
    const budget = 170000 + 4 * 9 * 256;
    const tiered = model.createSession({ kv: { policy: 'tiered', budgetBytes: budget, cold } });
    const prompt = Array.from({ length: 150 }, (_, i) => 1 + ((i * 7919 + 13) % (vocab - 1)));
    let equal = same(await plain.eval(prompt, { logits: 'all' }), await tiered.eval(prompt, { logits: 'all' }));
    let steps = 0;
    for (let i = 0; i < 60; i++) {
      const t = [(i * 31 + 5) % vocab];
      if (same(await plain.eval(t), await tiered.eval(t))) steps++;
      if (i === 30) { plain.truncate(170); tiered.truncate(170); }
    }
    const s = tiered.kvStats();
    const during = await names();
    tiered.dispose();
    for (let i = 0; i < 50 && (await names()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const after = await names();
    // KVPR restore in the browser: the first 16 cold rows of each layer recomputed from their saved inputs, the rest
    // read from another OPFS file; recomputed rows are bit-identical, so the logits equal the untiered cache's.
    const plain2 = model.createSession();
    const kvpr = model.createSession({ kv: { policy: 'tiered', budgetBytes: budget + KVPR_EXTRA, cold: await openOpfsColdFile('bmc-llm-kv-kvpr.bin'), restore: { l: 16 } } });
    let kvprEqual = same(await plain2.eval(prompt, { logits: 'all' }), await kvpr.eval(prompt, { logits: 'all' }));
    let kvprSteps = 0;
    for (let i = 0; i < 30; i++) {
      const t = [(i * 37 + 3) % vocab];
      if (same(await plain2.eval(t), await kvpr.eval(t))) kvprSteps++;
    }
    const restore = kvpr.kvStats().tiers.restore;
    kvpr.dispose();
    plain2.dispose();
    for (let i = 0; i < 50 && (await names()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const afterKvpr = await names();
    model.dispose();
    self.postMessage({ ok: true, equal, steps, kvprEqual, kvprSteps, afterKvpr, recomputedRows: restore.recomputedRows, readRows: restore.readRows, coldStore: s.tiers.coldStore, coldRows: s.tiers.coldRows, rows: s.length * model.info.hparams.nLayers,
      hostBytes: s.tiers.hostBytes, stagedBytes: s.tiers.stagedBytes, arena: s.bytes + s.overheadBytes, budget, during, after });
  } catch (e) {
    self.postMessage({ ok: false, error: `${e?.name}: ${e?.message}` });
  }
};
