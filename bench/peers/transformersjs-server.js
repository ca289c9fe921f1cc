#!/usr/bin/env node
// The benchmark peer: the same /v1/classify on fastify, served by @huggingface/transformers
// (onnxruntime-node) from the same weights exported to ONNX. One pipeline call per request, as a
// server written on that library would do (it has no cross-request batching).
// Usage: node bench/peers/transformersjs-server.js <model dir with onnx/model.onnx> [fp32|q8] <port> [--workers N]
// (q8: onnx/model_quantized.onnx, onnxruntime's int8 dynamic quantisation; --workers: N processes sharing
// the port through Node's cluster module, each with onnxruntime's intra-op threads set to cores / N, as
// `torchbert serve --workers` shares them out)
'use strict';
const cluster = require('cluster');
const os = require('os');
const path = require('path');
const Fastify = require('fastify');

(async () => {
  const args = process.argv.slice(2);
  const w = args.indexOf('--workers');
  const workers = w >= 0 ? Number(args.splice(w, 2)[1]) : 1;
  if (!Number.isInteger(workers) || workers < 1) throw new Error('--workers needs a positive integer');
  const [dir, dtype, port] = args.length === 3 ? args : [args[0], 'fp32', args[1]];
  if (workers > 1 && cluster.isPrimary) {
    let up = 0;
    for (let i = 0; i < workers; i++) cluster.fork().on('message', (m) => m === 'up' && ++up === workers && console.log(`serving on http://127.0.0.1:${port}`));
    const stop = (code) => {
      cluster.removeAllListeners('exit');
      for (const c of Object.values(cluster.workers)) c.process.kill('SIGTERM');
      process.exit(code);
    };
    process.on('SIGTERM', () => stop(0));
    // A worker that dies mid-run would leave the benchmark measuring fewer workers than it names: stop
    // the whole server instead, so bench/serve.js sees the peer fail.
    cluster.on('exit', (w, code, signal) => {
      console.error(`transformers.js worker ${w.process.pid} exited (${signal ?? code}); stopping the server`);
      stop(1);
    });
    return;
  }
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = path.dirname(path.resolve(dir)) + path.sep;
  const session_options = workers > 1 ? { intraOpNumThreads: Math.max(1, Math.floor(os.availableParallelism() / workers)) } : undefined;
  const clf = await pipeline('text-classification', path.basename(dir), { dtype, device: 'cpu', session_options });
  await clf('warm up');
  const app = Fastify({ bodyLimit: 1 << 20 });
  app.post('/v1/classify', async (req) => {
    const inputs = Array.isArray(req.body.inputs) ? req.body.inputs : [req.body.inputs];
    const out = await clf(inputs, { top_k: 1 });
    return { results: inputs.length === 1 ? [out] : out.map((x) => [x]) };
  });
  const url = await app.listen({ host: '127.0.0.1', port: Number(port) });
  if (cluster.isWorker) process.send('up');
  else console.log(`serving on ${url}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
