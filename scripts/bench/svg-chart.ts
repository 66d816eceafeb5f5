/** A small dependency-free SVG line chart: one polyline per series, axes with ticks, a legend. */
export interface Series { name: string; points: Array<[number, number]> }

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f'];

function niceTicks(lo: number, hi: number, n = 5): number[] {
  const span = hi - lo || 1;
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

export function lineChart(opts: { title: string; xLabel: string; yLabel: string; series: Series[]; logX?: boolean }): string {
  const W = 760, H = 440, L = 70, R = 190, T = 40, B = 55;
  const xs = opts.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = opts.series.flatMap((s) => s.points.map((p) => p[1]));
  const fx = opts.logX ? Math.log2 : (v: number) => v;
  const x0 = fx(Math.min(...xs)), x1 = fx(Math.max(...xs));
  const yMax = Math.max(...ys) * 1.08 || 1;
  const px = (v: number) => L + ((fx(v) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (v: number) => H - B - (v / yMax) * (H - T - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`);
  for (const t of niceTicks(0, yMax)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(t)}" y2="${py(t)}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 6}" y="${py(t) + 4}" text-anchor="end">${t}</text>`);
  }
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  for (const t of xTicks) parts.push(`<text x="${px(t)}" y="${H - B + 18}" text-anchor="middle">${t}</text>`);
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(opts.xLabel)}</text>`);
  parts.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`);
  opts.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts}"/>`);
    for (const [x, y] of s.points) parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${c}"/>`);
    parts.push(`<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${T + 10 + i * 20}" y2="${T + 10 + i * 20}" stroke="${c}" stroke-width="2"/>`);
    parts.push(`<text x="${W - R + 46}" y="${T + 14 + i * 20}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/**
 * Grouped bar chart: one group per category, one bar per series (a missing value leaves a gap), and optional marks
 * (short horizontal lines across a group, e.g. a physical limit). logY for values that span orders of magnitude.
 */
export function barChart(opts: {
  title: string; yLabel: string; categories: string[];
  series: Array<{ name: string; values: Array<number | undefined>; color?: string }>;
  marks?: Array<{ name: string; values: Array<number | undefined>; color?: string }>;
  logY?: boolean;
}): string {
  const color = (s: { color?: string }, i: number) => s.color ?? COLORS[i % COLORS.length]!;
  const W = Math.max(760, 120 + opts.categories.length * (30 + 16 * opts.series.length)), H = 460, L = 70, R = 200, T = 40, B = 90;
  const all = [...opts.series, ...(opts.marks ?? [])].flatMap((s) => s.values).filter((v): v is number => v !== undefined && Number.isFinite(v) && v > 0);
  const vMax = Math.max(1, ...all) * 1.08;
  // Log scale: from the power of ten below the smallest value; linear: from 0.
  const lo = opts.logY ? 10 ** Math.floor(Math.log10(Math.min(...all, vMax))) : 0;
  const fy = (v: number) => (opts.logY ? Math.log10(v) : v);
  const py = (v: number) => H - B - ((fy(Math.max(v, lo)) - fy(lo)) / (fy(vMax) - fy(lo))) * (H - T - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`);
  const ticks = opts.logY
    ? Array.from({ length: Math.ceil(Math.log10(vMax / lo)) + 1 }, (_, i) => [1, 2, 5].map((m) => +(m * lo * 10 ** i).toPrecision(6))).flat().filter((t) => t <= vMax)
    : niceTicks(0, vMax);
  for (const t of ticks) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  const gw = (W - L - R) / opts.categories.length;
  const bw = (gw - 16) / opts.series.length;
  opts.categories.forEach((c, ci) => {
    const gx = L + ci * gw + 8;
    opts.series.forEach((s, si) => {
      const v = s.values[ci];
      if (v === undefined || !Number.isFinite(v) || v <= 0) return;
      const y = py(v);
      parts.push(`<rect x="${(gx + si * bw).toFixed(1)}" y="${y.toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${(H - B - y).toFixed(1)}" fill="${color(s, si)}"><title>${esc(`${s.name}: ${v.toFixed(1)}`)}</title></rect>`);
    });
    (opts.marks ?? []).forEach((m, mi) => {
      const v = m.values[ci];
      if (v === undefined || !Number.isFinite(v) || v <= 0) return;
      const y = py(Math.min(v, vMax));
      parts.push(`<line x1="${gx - 3}" x2="${gx + gw - 13}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${color(m, opts.series.length + mi)}" stroke-width="2" stroke-dasharray="5 3"/>`);
    });
    parts.push(`<text transform="translate(${(gx + (gw - 16) / 2).toFixed(1)} ${H - B + 14}) rotate(30)" text-anchor="start">${esc(c)}</text>`);
  });
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`);
  parts.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}${opts.logY ? ' (log scale)' : ''}</text>`);
  const legend = [...opts.series.map((s) => ({ ...s, mark: false })), ...(opts.marks ?? []).map((m) => ({ ...m, mark: true }))];
  legend.forEach((e, i) => {
    const c = color(e, i);
    const y = T + 10 + i * 20;
    parts.push(e.mark
      ? `<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${y}" y2="${y}" stroke="${c}" stroke-width="2" stroke-dasharray="5 3"/>`
      : `<rect x="${W - R + 15}" y="${y - 6}" width="25" height="12" fill="${c}"/>`);
    parts.push(`<text x="${W - R + 46}" y="${y + 4}">${esc(e.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
