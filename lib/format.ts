// PyTorch-style printing of tensors: `tensor([[1.0000, 2.5000]], dtype=torch.float64)`, with the same
// fixed/scientific choice, integral-float form (`1.`), alignment and summarisation (> 1000 elements).
import type { DType } from './tensor';

const THRESHOLD = 1000;
const EDGE = 3;

function floatFormatter(values: number[]): (v: number) => string {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return (v) => fmtSpecial(v) ?? String(v);
  const abs = finite.map(Math.abs).filter((v) => v > 0);
  const allInt = finite.every((v) => Number.isInteger(v));
  const max = abs.length ? Math.max(...abs) : 0;
  const min = abs.length ? Math.min(...abs) : 0;
  if (allInt) {
    if (max > 1e8) return (v) => fmtSpecial(v) ?? v.toExponential(4).replace(/e([+-])(\d)$/, 'e$10$2');
    return (v) => fmtSpecial(v) ?? `${v.toFixed(0)}.`;
  }
  if (max / (min || 1) > 1000 || max > 1e8 || (min > 0 && min < 1e-4)) return (v) => fmtSpecial(v) ?? v.toExponential(4).replace(/e([+-])(\d)$/, 'e$10$2');
  return (v) => fmtSpecial(v) ?? v.toFixed(4);
}

function fmtSpecial(v: number): string | undefined {
  if (Number.isNaN(v)) return 'nan';
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  return undefined;
}

export function formatTensor(flat: ArrayLike<number | bigint>, shape: number[], dtype: DType, device: string, requiresGrad: boolean): string {
  const numel = shape.reduce((a, b) => a * b, 1);
  const summarize = numel > THRESHOLD;
  const isFloat = dtype.startsWith('float') || dtype === 'bfloat16';
  // Collect the elements that will be shown, to pick one format for all of them.
  const shown: number[] = [];
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const visit = (d: number, offset: number): void => {
    if (d === shape.length) {
      shown.push(Number(flat[offset]));
      return;
    }
    const n = shape[d];
    const idx = summarize && n > 2 * EDGE ? [...Array(EDGE).keys(), ...Array.from({ length: EDGE }, (_, i) => n - EDGE + i)] : [...Array(n).keys()];
    for (const i of idx) visit(d + 1, offset + i * strides[d]);
  };
  visit(0, 0);
  const fmt =
    dtype === 'bool' ? (v: number) => (v ? 'True' : 'False') : isFloat ? floatFormatter(shown) : (v: number) => String(v);
  const width = Math.max(1, ...shown.map((v) => fmt(v).length));
  const pad = (s: string) => s.padStart(width);
  const render = (d: number, offset: number, indent: number): string => {
    if (d === shape.length) return pad(fmt(Number(flat[offset])));
    const n = shape[d];
    const parts: string[] = [];
    const cut = summarize && n > 2 * EDGE;
    for (let i = 0; i < n; i++) {
      if (cut && i === EDGE) {
        parts.push('...');
        i = n - EDGE - 1;
        continue;
      }
      parts.push(render(d + 1, offset + i * strides[d], indent + 1));
    }
    if (d === shape.length - 1) return `[${parts.join(', ')}]`;
    const sep = ',' + '\n'.repeat(shape.length - d - 1) + ' '.repeat(indent + 1);
    return `[${parts.join(sep)}]`;
  };
  const body = shape.length === 0 ? fmt(Number(flat[0])) : render(0, 0, 7);
  const extras: string[] = [];
  if (device !== 'cpu') extras.push(`device='${device}'`);
  if (numel === 0 && shape.length > 1) extras.push(`size=(${shape.join(', ')})`);
  const defaultDtype = dtype === 'float32' || dtype === 'int64' || dtype === 'bool';
  if (!defaultDtype) extras.push(`dtype=torch.${dtype}`);
  if (requiresGrad) extras.push('requires_grad=True');
  return `tensor(${body}${extras.length ? ', ' + extras.join(', ') : ''})`;
}
