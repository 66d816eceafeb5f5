/**
 * A small dependency-free SVG chart for the placement simulator: one horizontal bar per policy (throughput
 * relative to static placement), annotated with the fast-tier hit rate. The engine's own copy, since the CLI is
 * bundled from engine/ (the bench charts live in scripts/bench/svg-chart.ts).
 */
import { readerNote } from './simulate.js';
import type { SimulationReport } from './simulate.js';

const COLORS: Record<string, string> = {
  ideal: '#7f7f7f', static: '#d62728', reactive: '#ff7f0e', page: '#9467bd', online: '#1f77b4', oracle: '#2ca02c',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function placementChart(rep: SimulationReport, title: string): string {
  const rows = rep.results;
  const W = 760, L = 90, R = 170, T = 56, BAR = 26, GAP = 10;
  const H = T + rows.length * (BAR + GAP) + 40;
  const vMax = Math.max(1, ...rows.map((r) => r.throughputVsStatic)) * 1.05;
  const px = (v: number) => L + (v / vMax) * (W - L - R);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  const sub = `${rep.layers} layers, ${rep.steps} steps, context up to ${rep.maxContext}, ${rep.hotTokensPerLayer} hot rows per layer` +
    readerNote(rep);
  out.push(`<text x="${W / 2}" y="38" text-anchor="middle" fill="#555">${esc(sub)}</text>`);
  const step = vMax > 8 ? 2 : vMax > 4 ? 1 : 0.5;
  for (let v = 0; v <= vMax; v += step) {
    out.push(`<line x1="${px(v).toFixed(1)}" x2="${px(v).toFixed(1)}" y1="${T - 4}" y2="${H - 34}" stroke="${v === 1 ? '#999' : '#e5e5e5'}"/>`);
    out.push(`<text x="${px(v).toFixed(1)}" y="${H - 20}" text-anchor="middle">${v}x</text>`);
  }
  rows.forEach((r, i) => {
    const y = T + i * (BAR + GAP);
    out.push(`<text x="${L - 8}" y="${y + BAR / 2 + 4}" text-anchor="end">${esc(r.policy)}</text>`);
    out.push(`<rect x="${L}" y="${y}" width="${(px(r.throughputVsStatic) - L).toFixed(1)}" height="${BAR}" fill="${COLORS[r.policy] ?? '#17becf'}"/>`);
    const note = `${r.throughputVsStatic.toFixed(2)}x, hit ${(100 * r.hitRate).toFixed(1)}%${r.w !== undefined ? `, W ${r.w} R ${r.r}` : ''}`;
    out.push(`<text x="${(px(r.throughputVsStatic) + 6).toFixed(1)}" y="${y + BAR / 2 + 4}">${esc(note)}</text>`);
  });
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle">throughput relative to static placement</text>`);
  out.push('</svg>');
  return out.join('\n');
}
