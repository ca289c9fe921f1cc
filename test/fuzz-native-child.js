// Child process for test/errors.test.ts: calls every exported native function with wrong types, wrong
// shapes, disposed tensors and absurd sizes. Any abort kills this process; success prints a summary.
'use strict';
const path = require('path');
const b = require(process.env.TORCHBERT_ADDON || path.join(__dirname, '..', 'build', 'Release', 'torchbert.node'));

class TorchError extends Error {
  constructor(m, c) { super(m); this.code = c; }
}
b.setErrorClass(TorchError);

const live = b.fromTypedArray(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32');
const dead = b.fromTypedArray(new Float32Array([1]), [1], 'float32');
b.release(dead);
const bad = [undefined, null, 0, -1, 1.5, NaN, Infinity, 1e300, 2 ** 53, -(2 ** 60), 'x', '', true, {}, [], [1, 'a'],
  [[[]]], () => 1, Symbol('s'), 10n, -1n, 2n ** 70n, new Float32Array(3), dead, live, [live, dead], { a: dead }];
let calls = 0;
let errors = 0;
const kinds = new Map();
function attempt(fn) {
  calls++;
  try {
    fn();
  } catch (e) {
    errors++;
    const k = e && e.constructor ? e.constructor.name : typeof e;
    kinds.set(k, (kinds.get(k) || 0) + 1);
  }
}

// Every plain exported function, with 0..3 arguments drawn from `bad`.
const fns = Object.entries(b).filter(([n, f]) => typeof f === 'function' && n !== 'NativeModule' && n !== 'setErrorClass');
for (const [name, f] of fns) {
  if (name === 'setNumThreads') continue;  // valid values change global state; checked below
  attempt(() => f());
  for (const x of bad) {
    attempt(() => f(x));
    for (const y of bad.slice(0, 12)) attempt(() => f(x, y));
    attempt(() => f(live, x, x, x));
  }
}
attempt(() => b.setNumThreads(0));
attempt(() => b.setNumThreads(-3));
attempt(() => b.setNumThreads('many'));

// Absurd sizes and shapes.
const zeros = b.opHandle('aten::zeros');
const empty = b.opHandle('aten::empty.memory_format');
attempt(() => b.callOp(empty, [1e13], 'float32'));
attempt(() => b.callOp(empty, [2 ** 40, 2 ** 40], 'float32'));
attempt(() => b.callOp(zeros, [-5], 'float32'));
attempt(() => b.callOp(zeros, [3], 'complex-ish'));
attempt(() => b.fromTypedArray(new Float32Array(4), [3], 'float32'));
attempt(() => b.fromTypedArray(new Float32Array(4), [-4], 'float32'));
attempt(() => b.fromTypedArray(new Float32Array(4), [2, 2], 'float32', 'cuda:99'));
attempt(() => b.fromTypedArray(new Uint16Array(4), [4], 'float32'));
// Wrong shapes and dtypes through real ops.
const ops = ['aten::matmul', 'aten::add.Tensor', 'aten::cat', 'aten::index_select', 'aten::cross_entropy_loss', 'aten::view',
  'aten::reshape', 'aten::embedding', 'aten::layer_norm', 'aten::scaled_dot_product_attention', 'aten::gather', 'aten::to.dtype_layout'];
for (const name of ops) {
  const h = b.opHandle(name);
  for (const x of bad) {
    attempt(() => b.callOp(h, live, x));
    attempt(() => b.callOp(h, x, live, x));
    attempt(() => b.callOp(h, [live, x]));
    attempt(() => b.callOpInplace(h, live, x, x));
    attempt(() => b.callOp(h, live, live, live, live, live, live, live, live, live, live));
  }
}
attempt(() => b.opHandle('aten::no_such_op'));
attempt(() => b.callOp(123456));
// Safetensors entry points with hostile arguments.
attempt(() => b.readTensors('/nonexistent', 0, [], undefined, false));
attempt(() => b.readTensors(__filename, 1e15, [{ dtype: 'float32', shape: [1], begin: 0, end: 4 }], undefined, false));
attempt(() => b.readTensors(__filename, 8, [{ dtype: 'float32', shape: [1e9], begin: 0, end: 4e9 }], undefined, false));
attempt(() => b.readTensors(__filename, 8, [{ dtype: 'float32', shape: [2], begin: 4, end: 0 }], undefined, false));
attempt(() => b.writeTensors('/nonexistent/dir/x', new Uint8Array(8), [live], false));
attempt(() => b.writeTensors('/tmp/x', new Uint8Array(8), [dead], false));
// Modules.
const M = b.NativeModule;
attempt(() => new M());
attempt(() => new M('bad name with spaces'));
attempt(() => M.loadSync('/nonexistent.pt'));
attempt(() => M.loadSync(__filename));
const m = new M('Fuzz');
const methods = ['saveSync', 'callSync', 'define', 'registerParameter', 'registerModule', 'registerAttribute', 'setAttr', 'getAttr',
  'hasAttr', 'methodSchema', 'namedParameters', 'train', 'to', 'freeze', 'code'];
for (const meth of methods) {
  for (const x of bad) {
    attempt(() => m[meth](x));
    attempt(() => m[meth](x, x, x));
    attempt(() => m[meth]('w', x, x));
  }
}
attempt(() => m.define('def forward(self, x: Tensor) -> Tensor:\n    return x.view(-1, 7)\n'));
attempt(() => m.callSync('forward', [live]));
attempt(() => m.callSync('forward', [dead]));
attempt(() => m.callSync('forward', [live, live]));
attempt(() => m.define('this is not python'));
m.dispose();
attempt(() => m.callSync('forward', [live]));

// Async entry points must reject, not crash.
// (a bad handle may also throw synchronously before a promise exists: both count as rejected)
const promises = [
  () => b.toTypedArrayAsync(dead), () => M.load('/nonexistent.pt'), () => b.backward(live, undefined, false, false, true),
  () => b.readTensors('/nonexistent', 0, [], undefined, true), () => b.writeTensors('/nonexistent/dir/x', new Uint8Array(8), [live], true),
].map((f) => Promise.resolve().then(f).then(() => 'resolved', () => 'rejected'));
Promise.all(promises).then((r) => {
  console.log(JSON.stringify({ calls, errors, kinds: Object.fromEntries(kinds), async: r }));
  process.exit(0);
});
