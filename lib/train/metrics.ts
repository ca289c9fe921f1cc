// Classification metrics: accuracy, F1 (binary and macro) and Matthews correlation, as scikit-learn
// defines them.

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
