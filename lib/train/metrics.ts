// Classification metrics: accuracy, F1 (binary and macro) and Matthews correlation, as scikit-learn
// defines them; regression's correlations as scipy's.

export function accuracy(pred: number[], gold: number[]): number {
  if (pred.length !== gold.length) throw new RangeError(`accuracy: ${pred.length} predictions for ${gold.length} labels`);
  return pred.filter((p, i) => p === gold[i]).length / Math.max(1, gold.length);
}

function f1For(pred: number[], gold: number[], cls: number): number {
  let tp = 0, fp = 0, fn = 0;
  pred.forEach((p, i) => {
    if (p === cls && gold[i] === cls) tp++;
    else if (p === cls) fp++;
    else if (gold[i] === cls) fn++;
  });
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** Binary F1 of the positive class (1), or the unweighted mean over classes with average 'macro'. */
export function f1(pred: number[], gold: number[], average: 'binary' | 'macro' = 'binary'): number {
  if (average === 'binary') return f1For(pred, gold, 1);
  const classes = [...new Set([...gold, ...pred])];
  return classes.reduce((a, c) => a + f1For(pred, gold, c), 0) / classes.length;
}

/** Matthews correlation coefficient (multiclass form). */
export function mcc(pred: number[], gold: number[]): number {
  const classes = [...new Set([...gold, ...pred])];
  const n = gold.length;
  const c = pred.filter((p, i) => p === gold[i]).length;
  const t = classes.map((k) => gold.filter((g) => g === k).length);
  const p = classes.map((k) => pred.filter((x) => x === k).length);
  const num = c * n - t.reduce((a, tk, i) => a + tk * p[i], 0);
  const den = Math.sqrt((n * n - p.reduce((a, x) => a + x * x, 0)) * (n * n - t.reduce((a, x) => a + x * x, 0)));
  return den === 0 ? 0 : num / den;
}

// ---------- regression: what GLUE's STS-B reports (scipy.stats.pearsonr / spearmanr), and the MSE ----------

function checkPaired(name: string, x: number[], y: number[]): void {
  if (x.length !== y.length) throw new RangeError(`${name}: ${x.length} predictions for ${y.length} targets`);
  if (x.length < 2) throw new RangeError(`${name}: needs at least 2 pairs, got ${x.length}`);
}

/** Pearson's correlation coefficient; NaN where either series is constant (as scipy returns). */
export function pearson(x: number[], y: number[]): number {
  checkPaired('pearson', x, y);
  const n = x.length;
  const mx = x.reduce((a, v) => a + v, 0) / n, my = y.reduce((a, v) => a + v, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return NaN;
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

/** Ranks from 1, ties given the mean of the ranks they span (scipy.stats.rankdata's 'average'). */
function ranks(v: number[]): number[] {
  const order = v.map((_, i) => i).sort((a, b) => v[a] - v[b]);
  const r = new Array<number>(v.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && v[order[j + 1]] === v[order[i]]) j++;
    for (let k = i; k <= j; k++) r[order[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

/** Spearman's rank correlation: Pearson's on average ranks. */
export function spearman(x: number[], y: number[]): number {
  checkPaired('spearman', x, y);
  return pearson(ranks(x), ranks(y));
}

export function meanSquaredError(pred: number[], gold: number[]): number {
  if (pred.length !== gold.length) throw new RangeError(`meanSquaredError: ${pred.length} predictions for ${gold.length} targets`);
  return pred.reduce((a, p, i) => a + (p - gold[i]) ** 2, 0) / Math.max(1, gold.length);
}

// ---------- multi-label: scikit-learn's scores of multi-hot rows ----------

export interface MultiLabelScores {
  /** F1 over every (row, class) decision pooled: what HF's run_classification reports */
  microF1: number;
  /** the unweighted mean of each class's F1 (0 for a class never true nor predicted, as scikit-learn) */
  macroF1: number;
  /** rows whose every class is right (scikit-learn's accuracy_score of multi-hot rows) */
  subsetAccuracy: number;
  /** the share of (row, class) decisions that are wrong */
  hammingLoss: number;
}

/** Scores of multi-hot predictions (0 or 1 per class) against multi-hot labels, rows of one width. */
export function multiLabelScores(pred: number[][], gold: number[][]): MultiLabelScores {
  if (pred.length !== gold.length) throw new RangeError(`multiLabelScores: ${pred.length} predictions for ${gold.length} labels`);
  const k = gold[0]?.length ?? 0;
  if ([...pred, ...gold].some((r) => r.length !== k)) throw new RangeError(`multiLabelScores: every row needs ${k} classes`);
  const tp = new Array<number>(k).fill(0), fp = new Array<number>(k).fill(0), fn = new Array<number>(k).fill(0);
  let exact = 0;
  pred.forEach((p, i) => {
    let same = true;
    for (let c = 0; c < k; c++) {
      const y = gold[i][c] === 1, yhat = p[c] === 1;
      if (y && yhat) tp[c]++;
      else if (yhat) fp[c]++;
      else if (y) fn[c]++;
      if (y !== yhat) same = false;
    }
    if (same) exact++;
  });
  const f = (t: number, p: number, n: number) => (t === 0 ? 0 : (2 * t) / (2 * t + p + n));
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  const n = Math.max(1, gold.length);
  return {
    microF1: f(sum(tp), sum(fp), sum(fn)),
    macroF1: k ? tp.reduce((a, t, c) => a + f(t, fp[c], fn[c]), 0) / k : 0,
    subsetAccuracy: exact / n,
    hammingLoss: (sum(fp) + sum(fn)) / (n * Math.max(1, k)),
  };
}

// ---------- NER: entity-level scores with seqeval's semantics ----------

export interface Entity {
  type: string;
  start: number;
  /** inclusive, as seqeval's get_entities */
  end: number;
}

/**
 * Entity chunks of a tag sequence exactly as seqeval's default (lenient) mode reads them: the tag is the
 * first character, the type what follows the first '-'; a chunk starts at B- or S-, at an I-/E- after O,
 * E- or S-, or where the type changes, so IOB1 and IOB2 both work.
 */
export function getEntities(tags: string[]): Entity[] {
  const out: Entity[] = [];
  let prevTag = 'O';
  let prevType = '';
  let begin = 0;
  [...tags, 'O'].forEach((chunk, i) => {
    const tag = chunk[0] ?? 'O';
    const rest = chunk.slice(1);
    const type = (rest.includes('-') ? rest.slice(rest.indexOf('-') + 1) : rest) || '_';
    const end =
      prevTag === 'E' || prevTag === 'S' ||
      ((prevTag === 'B' || prevTag === 'I') && (tag === 'B' || tag === 'S' || tag === 'O')) ||
      (prevTag !== 'O' && prevTag !== '.' && prevType !== type);
    if (end) out.push({ type: prevType, start: begin, end: i - 1 });
    const start =
      tag === 'B' || tag === 'S' ||
      ((prevTag === 'E' || prevTag === 'S' || prevTag === 'O') && (tag === 'E' || tag === 'I')) ||
      (tag !== 'O' && tag !== '.' && prevType !== type);
    if (start) begin = i;
    prevTag = tag;
    prevType = type;
  });
  return out;
}

export interface EntityScores {
  precision: number;
  recall: number;
  f1: number;
  /** per entity type: precision, recall, f1 and the number of gold entities */
  perType: Record<string, { precision: number; recall: number; f1: number; support: number }>;
}

/** Micro-averaged entity precision, recall and F1 over sentences (seqeval's f1_score and report). */
export function entityScores(pred: string[][], gold: string[][]): EntityScores {
  if (pred.length !== gold.length) throw new RangeError(`entityScores: ${pred.length} predicted sentences for ${gold.length} gold`);
  const key = (s: number, e: Entity) => `${s}|${e.type}|${e.start}|${e.end}`;
  const P = new Map<string, string>();
  const G = new Map<string, string>();
  gold.forEach((g, s) => {
    if (g.length !== pred[s].length) throw new RangeError(`entityScores: sentence ${s} has ${pred[s].length} predicted tags for ${g.length} gold`);
    for (const e of getEntities(g)) G.set(key(s, e), e.type);
    for (const e of getEntities(pred[s])) P.set(key(s, e), e.type);
  });
  const prf = (tp: number, np: number, ng: number) => {
    const precision = np ? tp / np : 0;
    const recall = ng ? tp / ng : 0;
    return { precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0 };
  };
  const types = [...new Set([...G.values(), ...P.values()])].sort();
  const perType: EntityScores['perType'] = {};
  for (const t of types) {
    const g = [...G].filter(([, v]) => v === t);
    const np = [...P.values()].filter((v) => v === t).length;
    const tp = g.filter(([k]) => P.has(k)).length;
    perType[t] = { ...prf(tp, np, g.length), support: g.length };
  }
  const tp = [...G.keys()].filter((k) => P.has(k)).length;
  return { ...prf(tp, P.size, G.size), perType };
}

// ---------- extractive QA: exact match and token F1 (the SQuAD v1.1 evaluation) ----------

/** Lower case, no punctuation, no articles (a, an, the), single spaces: SQuAD's normalize_answer. */
export function normalizeAnswer(s: string): string {
  const punct = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
  const lower = s.toLowerCase();
  let noPunct = '';
  for (const ch of lower) if (!punct.has(ch)) noPunct += ch;
  return noPunct.replace(/\b(a|an|the)\b/g, ' ').split(/\s+/).filter(Boolean).join(' ');
}

function tokenF1(pred: string, gold: string): number {
  const p = normalizeAnswer(pred).split(' ').filter(Boolean);
  const g = normalizeAnswer(gold).split(' ').filter(Boolean);
  // Unanswerable on either side: 1 when both are empty, else 0 (SQuAD 2.0's convention).
  if (!p.length || !g.length) return Number(p.length === g.length);
  const counts = new Map<string, number>();
  for (const t of g) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      same++;
      counts.set(t, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length;
  const recall = same / g.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Exact match and F1 of one prediction against its gold answers (the best over them). */
export function qaScore(pred: string, golds: string[]): { exact: number; f1: number } {
  const gs = golds.length ? golds : [''];
  return {
    exact: Math.max(...gs.map((g) => Number(normalizeAnswer(pred) === normalizeAnswer(g)))),
    f1: Math.max(...gs.map((g) => tokenF1(pred, g))),
  };
}

/** Mean exact match and F1 over a set of questions, as fractions (SQuAD reports them x 100). */
export function qaMetrics(preds: string[], golds: string[][]): { exact: number; f1: number } {
  if (preds.length !== golds.length) throw new RangeError(`qaMetrics: ${preds.length} predictions for ${golds.length} questions`);
  let e = 0;
  let f = 0;
  preds.forEach((p, i) => {
    const s = qaScore(p, golds[i]);
    e += s.exact;
    f += s.f1;
  });
  return { exact: e / Math.max(1, preds.length), f1: f / Math.max(1, preds.length) };
}
