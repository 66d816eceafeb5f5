// The chat page: load a GGUF from a URL or a file with a progress bar, then stream replies token by token.
// Threads: on a cross-origin isolated page (COOP/COEP headers, see serve.mjs) the kernels run in module workers over
// one shared memory; elsewhere the model runs on the page's thread.
import { loadModel } from 'bmc-llm';

const $ = (id) => document.getElementById(id);
const isolated = globalThis.crossOriginIsolated === true;
$('threads').value = isolated ? String(navigator.hardwareConcurrency || 1) : '1';
$('threads').disabled = !isolated;

let model;
let abort;

function setState(state, text) {
  document.body.dataset.state = state;
  if (text !== undefined) $('status').textContent = text;
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

async function load(source, name) {
  model?.dispose();
  model = undefined;
  $('send').disabled = true;
  $('progress').value = 0;
  setState('loading', `Loading ${name}…`);
  const t0 = performance.now();
  try {
    model = await loadModel(source, {
      threads: Number($('threads').value) || 1,
      onProgress: (p) => {
        if (p.status !== 'progress') return;
        $('progress').value = p.progress;
        setState('loading', `Loading ${name}: ${p.progress.toFixed(0)}% (${mb(p.loaded)} of ${mb(p.total)})`);
      },
    });
  } catch (e) {
    setState('error', `Could not load ${name}: ${e.message}`);
    return;
  }
  const { architecture, hparams, simd, threads, threadsFallback } = model.info;
  $('progress').value = 100;
  document.body.dataset.threads = String(threads);
  document.body.dataset.simd = simd;
  setState('ready', `${name}: ${architecture}, ${hparams.nLayers} layers, dim ${hparams.dim}; ${simd} SIMD, ` +
    `${threads} thread${threads > 1 ? 's' : ''}${threadsFallback ? ` (${threadsFallback})` : isolated ? ' (cross-origin isolated)' : ''}; ` +
    `loaded in ${(performance.now() - t0).toFixed(0)} ms`);
  $('send').disabled = false;
}

function bubble(cls, text) {
  const div = document.createElement('div');
  div.className = `msg ${cls}`;
  div.textContent = text;
  $('chat').append(div);
  return div;
}

async function send() {
  const prompt = $('prompt').value;
  if (!model || !prompt) return;
  bubble('user', prompt);
  $('prompt').value = '';
  const reply = bubble('model', '');
  $('send').disabled = true;
  $('stop').disabled = false;
  abort = new AbortController();
  setState('generating');
  const gen = model.generate(prompt, {
    maxTokens: Number($('max').value) || 128, temperature: Number($('temp').value), signal: abort.signal,
  });
  try {
    for await (const piece of gen) {
      reply.textContent += piece.text;
      reply.scrollIntoView({ block: 'end' });
    }
    const s = gen.stats;
    const stats = document.createElement('div');
    stats.className = 'stats';
    stats.textContent = `${s.generatedTokens} tokens, ${(1000 * s.generatedTokens / s.generateMs).toFixed(0)} tok/s` +
      ` (prompt ${s.promptTokens} tokens in ${s.promptMs.toFixed(1)} ms), stopped by ${s.stopReason}`;
    const t = model.threadStats();
    document.body.dataset.workerParts = String(t.workerParts);
    if (t.threads > 1) stats.textContent += `; workers took ${t.workerParts} of ${t.parts} parallel parts`;
    reply.after(stats);
    setState('ready');
  } catch (e) {
    setState('error', `Generation failed: ${e.message}`);
  } finally {
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

$('load-url').onclick = () => {
  const url = new URL($('url').value, location.href);
  load(url, url.pathname.split('/').pop());
};
$('file').onchange = () => {
  const file = $('file').files[0];
  if (file) load(file, file.name);
};
$('send').onclick = send;
$('stop').onclick = () => abort?.abort();
$('prompt').onkeydown = (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    if (!$('send').disabled) send();
  }
};
const preset = new URLSearchParams(location.search).get('model');
if (preset) $('url').value = preset;
document.body.dataset.state = 'idle';
