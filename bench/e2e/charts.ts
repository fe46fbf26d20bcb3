// Hand-written SVG charts for docs/benchmarks.md: no chart library, just rectangles, lines
// and text, so the output is small, diffable and renders on GitHub.

const WIDTH = 640;
const HEIGHT = 320;
const MARGIN = { left: 70, right: 20, top: 36, bottom: 56 };
const COLORS = ['#2b6cb0', '#c05621', '#2f855a', '#6b46c1', '#b83280', '#4a5568'];

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function svgDocument(title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Returns a "nice" upper bound at or above `value`: 1, 2 or 5 times a power of ten. */
function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function formatTick(value: number): string {
  if (value >= 1e6) return `${value / 1e6}M`;
  if (value >= 1e3) return `${value / 1e3}k`;
  return String(Number(value.toPrecision(3)));
}

/** Draws a vertical bar chart with one bar per label and the value printed above each bar. */
export function barChart(title: string, yLabel: string, bars: { label: string; value: number }[]): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const yMax = niceCeiling(Math.max(1, ...bars.map((b) => b.value)));
  const body: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const value = (yMax * i) / 5;
    const y = MARGIN.top + plotH - (plotH * i) / 5;
    body.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y}" y2="${y}" stroke="#e2e8f0"/>`);
    body.push(`<text x="${MARGIN.left - 6}" y="${y + 4}" text-anchor="end">${formatTick(value)}</text>`);
  }
  const slot = plotW / Math.max(1, bars.length);
  bars.forEach((bar, i) => {
    const h = (plotH * bar.value) / yMax;
    const x = MARGIN.left + slot * i + slot * 0.2;
    const y = MARGIN.top + plotH - h;
    body.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot * 0.6).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[0]}"/>`);
    body.push(`<text x="${(x + slot * 0.3).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle">${escapeXml(Math.round(bar.value).toLocaleString('en-US'))}</text>`);
    body.push(`<text x="${(x + slot * 0.3).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${escapeXml(bar.label)}</text>`);
  });
  body.push(`<text x="16" y="${MARGIN.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 16 ${MARGIN.top + plotH / 2})">${escapeXml(yLabel)}</text>`);
  return svgDocument(title, body);
}

/**
 * Draws latency against percentile, one line per series. The x axis is logarithmic in
 * 1/(1 - p), so 50, 90, 99, 99.9 and 99.99 are evenly spaced. The y axis is logarithmic in
 * milliseconds.
 */
export function percentileChart(title: string, series: { name: string; points: { percentile: number; valueMs: number }[] }[]): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const ticks = [50, 90, 99, 99.9, 99.99];
  const xOf = (p: number): number => {
    const position = Math.log10(1 / (1 - Math.min(p, 99.99) / 100));
    return MARGIN.left + (plotW * (position - Math.log10(2))) / (4 - Math.log10(2));
  };
  const values = series.flatMap((s) => s.points.map((p) => p.valueMs)).filter((v) => v > 0);
  const yMinLog = Math.floor(Math.log10(Math.max(0.001, Math.min(...values, 1))));
  const yMaxLog = Math.ceil(Math.log10(Math.max(...values, 1)));
  const yOf = (valueMs: number): number => {
    const log = Math.log10(Math.max(valueMs, 10 ** yMinLog));
    return MARGIN.top + plotH - (plotH * (log - yMinLog)) / Math.max(1, yMaxLog - yMinLog);
  };
  const body: string[] = [];
  for (let log = yMinLog; log <= yMaxLog; log++) {
    const y = yOf(10 ** log);
    body.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y}" y2="${y}" stroke="#e2e8f0"/>`);
    const label = log >= 3 ? `${10 ** (log - 3)} s` : `${Number((10 ** log).toPrecision(1))} ms`;
    body.push(`<text x="${MARGIN.left - 6}" y="${y + 4}" text-anchor="end">${label}</text>`);
  }
  for (const p of ticks) {
    const x = xOf(p).toFixed(1);
    body.push(`<line x1="${x}" x2="${x}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="#e2e8f0"/>`);
    body.push(`<text x="${x}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">p${p}</text>`);
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.filter((p) => p.percentile < 100).map((p) => `${xOf(p.percentile).toFixed(1)},${yOf(p.valueMs).toFixed(1)}`);
    body.push(`<polyline points="${points.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    const legendY = HEIGHT - 18;
    const legendX = MARGIN.left + i * Math.floor((WIDTH - MARGIN.left) / series.length);
    body.push(`<rect x="${legendX}" y="${legendY - 9}" width="12" height="12" fill="${color}"/>`);
    body.push(`<text x="${legendX + 16}" y="${legendY + 1}">${escapeXml(s.name)}</text>`);
  });
  return svgDocument(title, body);
}
