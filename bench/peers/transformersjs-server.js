#!/usr/bin/env node
// The benchmark peer: the same /v1/classify on fastify, served by @huggingface/transformers
// (onnxruntime-node) from the same weights exported to ONNX. One pipeline call per request, as a
// server written on that library would do (it has no cross-request batching).
// Usage: node bench/peers/transformersjs-server.js <model dir with onnx/model.onnx> [fp32|q8] <port>
// (q8: onnx/model_quantized.onnx, onnxruntime's int8 dynamic quantisation)
'use strict';
const path = require('path');
const Fastify = require('fastify');

(async () => {
  const args = process.argv.slice(2);
  const [dir, dtype, port] = args.length === 3 ? args : [args[0], 'fp32', args[1]];
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = path.dirname(path.resolve(dir)) + path.sep;
  const clf = await pipeline('text-classification', path.basename(dir), { dtype, device: 'cpu' });
  await clf('warm up');
  const app = Fastify({ bodyLimit: 1 << 20 });
  app.post('/v1/classify', async (req) => {
    const inputs = Array.isArray(req.body.inputs) ? req.body.inputs : [req.body.inputs];
    const out = await clf(inputs, { top_k: 1 });
    return { results: inputs.length === 1 ? [out] : out.map((x) => [x]) };
  });
  const url = await app.listen({ host: '127.0.0.1', port: Number(port) });
  console.log(`serving on ${url}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
