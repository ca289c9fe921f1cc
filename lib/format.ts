// PyTorch-style printing of tensors, following the rules of torch/_tensor_str.py: one formatter for
// all shown values (fixed, integral `1.` or scientific), width-aligned, summarised past 1000 elements
// with 3 edge items, and vectors wrapped at 80 columns.

const PRECISION = 4;
const THRESHOLD = 1000;
const EDGE = 3;
const LINEWIDTH = 80;

/** Python's f"{v:.4e}": two-digit exponent at least. */
function sci(v: number): string {
  return v.toExponential(PRECISION).replace(/e([+-])(\d)$/, 'e$10$2');
}
function special(v: number): string | undefined {
  if (Number.isNaN(v)) return 'nan';
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  return undefined;
}

class Formatter {
  width = 1;
  private intMode = true;
  private sciMode = false;

  constructor(values: number[], private readonly floating: boolean, private readonly isBool: boolean) {
    if (!floating) {
      for (const v of values) this.width = Math.max(this.width, this.plain(v).length);
      return;
    }
    const nz = values.filter((v) => Number.isFinite(v) && v !== 0);
    if (nz.length === 0) {
      for (const v of values) this.width = Math.max(this.width, this.format(v).length);
      return;
    }
    const abs = nz.map(Math.abs);
    const min = Math.min(...abs);
    const max = Math.max(...abs);
    this.intMode = nz.every((v) => v === Math.ceil(v));
    if (this.intMode) {
      if (max / min > 1000 || max > 1e8) {
        this.sciMode = true;
        for (const v of nz) this.width = Math.max(this.width, sci(v).length);
      } else {
        for (const v of nz) this.width = Math.max(this.width, v.toFixed(0).length + 1);
      }
    } else if (max / min > 1000 || max > 1e8 || min < 1e-4) {
      this.sciMode = true;
      for (const v of nz) this.width = Math.max(this.width, sci(v).length);
    } else {
      for (const v of nz) this.width = Math.max(this.width, v.toFixed(PRECISION).length);
    }
    for (const v of values) if (!Number.isFinite(v)) this.width = Math.max(this.width, special(v)!.length);
  }

  private plain(v: number): string {
    return this.isBool ? (v ? 'True' : 'False') : String(v);
  }

  format(v: number): string {
    let s: string;
    if (!this.floating) s = this.plain(v);
    else if (this.sciMode) s = special(v) ?? sci(v);
    else if (this.intMode) s = special(v) ?? `${v.toFixed(0)}.`;
    else s = special(v) ?? v.toFixed(PRECISION);
    return s.padStart(this.width);
  }
}

export function formatTensor(flat: ArrayLike<number | bigint>, shape: number[], dtype: string, device: string, requiresGrad: boolean): string {
  const numel = shape.reduce((a, b) => a * b, 1);
  const summarize = numel > THRESHOLD;
  const floating = dtype.startsWith('float') || dtype === 'bfloat16';
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  // Indices shown along a dim of size n; -1 marks the '...' of a summarised dim.
  const shownIndices = (n: number): number[] =>
    summarize && n > 2 * EDGE
      ? [...Array.from({ length: EDGE }, (_, i) => i), -1, ...Array.from({ length: EDGE }, (_, i) => n - EDGE + i)]
      : Array.from({ length: n }, (_, i) => i);
  const value = (off: number) => Number(flat[off]);

  const shown: number[] = [];
  const visit = (d: number, off: number): void => {
    if (d === shape.length) shown.push(value(off));
    else for (const i of shownIndices(shape[d])) if (i >= 0) visit(d + 1, off + i * strides[d]);
  };
  if (numel > 0) visit(0, 0);
  const f = new Formatter(shown, floating, dtype === 'bool');

  const vector = (off: number, n: number, stride: number, indent: number): string => {
    const items = shownIndices(n).map((i) => (i < 0 ? ' ...' : f.format(value(off + i * stride))));
    const perLine = Math.max(1, Math.floor((LINEWIDTH - indent) / (f.width + 2)));
    const lines: string[] = [];
    for (let i = 0; i < items.length; i += perLine) lines.push(items.slice(i, i + perLine).join(', '));
    return `[${lines.join(',\n' + ' '.repeat(indent + 1))}]`;
  };
  const render = (d: number, off: number, indent: number): string => {
    if (d === shape.length - 1) return vector(off, shape[d], strides[d], indent);
    const parts = shownIndices(shape[d]).map((i) => (i < 0 ? '...' : render(d + 1, off + i * strides[d], indent + 1)));
    return `[${parts.join(',' + '\n'.repeat(shape.length - d - 1) + ' '.repeat(indent + 1))}]`;
  };

  const suffixes: string[] = [];
  if (device !== 'cpu') suffixes.push(`device='${device}'`);
  let body: string;
  if (numel === 0) {
    body = '[]';
    if (shape.length !== 1) suffixes.push(`size=(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`);
    if (dtype !== 'float32') suffixes.push(`dtype=torch.${dtype}`);
  } else {
    body = shape.length === 0 ? f.format(value(0)) : render(0, 0, 'tensor('.length);
    if (!(dtype === 'float32' || dtype === 'int64' || dtype === 'bool')) suffixes.push(`dtype=torch.${dtype}`);
  }
  if (requiresGrad) suffixes.push('requires_grad=True');
  return `tensor(${[body, ...suffixes].join(', ')})`;
}
