// The loss and eval curves of a run as an SVG image (no dependency: a few polylines with axes).

function panel(title: string, series: { name: string; pts: [number, number][] }[], x0: number, y0: number, w: number, h: number): string {
  const all = series.flatMap((s) => s.pts);
  if (!all.length) return '';
  const [xmin, xmax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [ymin, ymax] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (ymin === ymax) [ymin, ymax] = [ymin - 0.5, ymax + 0.5];
  const X = (x: number) => x0 + 50 + ((x - xmin) / Math.max(1e-12, xmax - xmin)) * (w - 70);
  const Y = (y: number) => y0 + h - 30 - ((y - ymin) / (ymax - ymin)) * (h - 60);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
  const ticks = [0, 0.5, 1].map((f) => ymin + f * (ymax - ymin));
  let out = `<text x="${x0 + w / 2}" y="${y0 + 18}" text-anchor="middle" font-size="14">${title}</text>`;
  out += `<line x1="${X(xmin)}" y1="${Y(ymin)}" x2="${X(xmax)}" y2="${Y(ymin)}" stroke="#333"/><line x1="${X(xmin)}" y1="${Y(ymin)}" x2="${X(xmin)}" y2="${Y(ymax)}" stroke="#333"/>`;
  for (const t of ticks) out += `<text x="${X(xmin) - 4}" y="${Y(t) + 4}" text-anchor="end" font-size="10">${t.toPrecision(3)}</text>`;
  out += `<text x="${X(xmin)}" y="${Y(ymin) + 14}" font-size="10">${xmin}</text><text x="${X(xmax)}" y="${Y(ymin) + 14}" text-anchor="end" font-size="10">step ${xmax}</text>`;
  series.forEach((s, i) => {
    const c = colors[i % colors.length];
    out += `<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${s.pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`;
    out += `<text x="${x0 + w - 10}" y="${y0 + 36 + 14 * i}" text-anchor="end" font-size="11" fill="${c}">${s.name}</text>`;
  });
  return out;
}

/** The curves a training run records (TrainResult has them). */
export interface Curves {
  losses: { step: number; loss: number }[];
  evals: { step: number; metrics: Record<string, number> }[];
}

/** An SVG with the training loss and, when there are evaluations, their metrics. */
export function curvesSvg(result: Curves, title = 'training'): string {
  const w = 720;
  const h = 280;
  const loss = [{ name: 'train loss', pts: result.losses.map((l) => [l.step, l.loss] as [number, number]) }];
  const names = [...new Set(result.evals.flatMap((e) => Object.keys(e.metrics)))];
  const evals = names.map((n) => ({ name: n, pts: result.evals.filter((e) => typeof e.metrics[n] === 'number').map((e) => [e.step, e.metrics[n]] as [number, number]) }));
  const height = evals.length ? 2 * h : h;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>` +
    panel(`${title}: loss`, loss, 0, 0, w, h) + (evals.length ? panel(`${title}: evaluation`, evals, 0, h, w, h) : '') + '</svg>\n';
}
