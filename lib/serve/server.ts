// The HTTP server: fastify routes over the pipelines of one model, Prometheus metrics, an OpenAPI
// document, request limits and graceful shutdown.
import Fastify, { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'http';
import swagger from '@fastify/swagger';
import * as client from 'prom-client';
import { BertTokenizer } from '../tokenizer';
import { fromPretrained, BertPreTrainedModel } from '../models/bert';
import { pipeline, tasksFor, Task, AnyPipeline, TextClassificationPipeline, TokenClassificationPipeline, FillMaskPipeline, QuestionAnsweringPipeline, FeatureExtractionPipeline } from '../pipelines';
import { BatcherOptions, QueueFullError, BatcherClosedError } from '../batcher';
import { setNumThreads, cpuCache } from '../torch';
import { checkCpuBf16 } from '../cpu';

export interface ServeOptions {
  /** model folder or Hub name (config.json, model.safetensors, tokenizer files) */
  model: string;
  host?: string;
  port?: number;
  device?: string;
  /** 'int8': int8 dynamic quantisation of the linear layers (CPU; faster than fp32: docs/benchmarks.md, Serving) */
  quantize?: 'int8';
  /** fp32 linear layers with weights laid out once for the GEMM measured fastest here (prepack(); default on the CPU in float32; false turns it off) */
  prepack?: boolean;
  /** prepacked weights: 'auto' keeps a second layout where it measured faster, 'one' one layout per layer (less memory; PrepackOptions.layouts) */
  weightLayouts?: 'auto' | 'one';
  /** 'bfloat16' (or 'bf16'): weights and activations in bf16; on the CPU only where it has bf16 units (refused elsewhere, where it would run slower than fp32) */
  dtype?: 'float32' | 'bfloat16' | 'bf16';
  /**
   * Map the checkpoint rather than read it (fromPretrained's `mmap`; default true on the CPU): the weights
   * kept as stored, the embeddings above all, stay the page cache's, read as touched and shared by every
   * worker process. Replace the model's files by a rename, never rewrite them in place, while it serves.
   */
  mmap?: boolean;
  /**
   * With `mmap` (the CPU's default): the word embeddings paged in by the rows the traffic looks up
   * (fromPretrained's `embeddingsByRows`), not by the kernel's fault-around; less resident memory, a read
   * from the file at each first use of a page. Default false.
   */
  embeddingsByRows?: boolean;
  /** intra-op threads for this process (default: libtorch's) */
  threads?: number;
  batch?: BatcherOptions;
  /** largest request body in bytes (default 1 MiB); larger gets 413 */
  bodyLimit?: number;
  /** most inputs in one request (default 256); more gets 413 */
  maxItems?: number;
  /** most characters in one text (default 20,000); longer gets 413 */
  maxTextChars?: number;
  /** texts longer than the model's token limit: cut ('truncate', default) or refused with 413 ('reject') */
  onLongInput?: 'truncate' | 'reject';
  /** log requests (fastify's pino logger) */
  logger?: boolean;
  /**
   * MB of freed activation blocks the CPU cache keeps for reuse (default: twice the largest working
   * set of a batch so far, measured as the allocator's peak bytes in use while it ran). The library's
   * default, a quarter of RAM, suits training; a server's batch shapes drift, and each would leave its
   * blocks behind. The cache is
   * one per process: servers running in one process add their caps, and when the last closes the limit
   * it found returns.
   */
  cpuCacheMb?: number;
  /**
   * Without `cpuCacheMb`: the cap as a multiple of the largest batch's working set (default 2, for
   * batches that differ in shape; 1 keeps less, as `--low-memory` does, at a few more fresh pages).
   */
  cpuCacheBatches?: number;
}

export { LOW_MEMORY_OPTIONS, SERVE_PRIMITIVE_CACHE } from './defaults';

export interface Server {
  app: FastifyInstance;
  url: string;
  tasks: Task[];
  pipelines: Map<Task, AnyPipeline>;
  /** stops accepting, answers what is in flight, then frees the model */
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const ROUTES: Record<Task, string> = {
  'text-classification': '/v1/classify',
  'feature-extraction': '/v1/embed',
  'token-classification': '/v1/ner',
  'fill-mask': '/v1/fill-mask',
  'question-answering': '/v1/qa',
};

const text = { type: 'string' };
const texts = { anyOf: [text, { type: 'array', items: text, minItems: 1 }] };
const qaItem = { type: 'object', required: ['question', 'context'], additionalProperties: false, properties: { question: text, context: text } };
const pairItem = { type: 'object', required: ['text'], additionalProperties: false, properties: { text, text_pair: text } };
const BODIES: Record<Task, object> = {
  'text-classification': {
    type: 'object', required: ['inputs'], additionalProperties: false,
    properties: {
      inputs: { anyOf: [text, pairItem, { type: 'array', minItems: 1, items: { anyOf: [text, pairItem] } }] },
      top_k: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'null' }], description: 'labels per input, best first; null for all (default 1)' },
      function_to_apply: { enum: ['softmax', 'sigmoid', 'none'] },
    },
  },
  'feature-extraction': {
    type: 'object', required: ['inputs'], additionalProperties: false,
    properties: { inputs: texts, pooling: { enum: ['mean', 'cls'], default: 'mean' }, normalize: { type: 'boolean', default: true } },
  },
  'token-classification': {
    type: 'object', required: ['inputs'], additionalProperties: false,
    properties: {
      inputs: texts,
      aggregation_strategy: { enum: ['none', 'simple', 'first', 'average', 'max'], default: 'simple' },
      ignore_labels: { type: 'array', items: text },
      stride: { type: 'integer', minimum: 0 },
    },
  },
  'fill-mask': {
    type: 'object', required: ['inputs'], additionalProperties: false,
    properties: { inputs: texts, top_k: { type: 'integer', minimum: 1, maximum: 100, default: 5 }, targets: { type: 'array', items: text, minItems: 1 } },
  },
  'question-answering': {
    type: 'object', required: ['inputs'], additionalProperties: false,
    properties: {
      inputs: { anyOf: [qaItem, { type: 'array', items: qaItem, minItems: 1 }] },
      top_k: { type: 'integer', minimum: 1, maximum: 20, default: 1 },
      max_answer_len: { type: 'integer', minimum: 1, default: 15 },
      doc_stride: { type: 'integer', minimum: 1 },
      handle_impossible_answer: { type: 'boolean', default: false },
    },
  },
};
const SUMMARY: Record<Task, string> = {
  'text-classification': 'Classify texts (or text pairs): labels with scores, best first',
  'feature-extraction': 'Embed texts: one pooled vector each (mean over tokens by default, L2-normalised)',
  'token-classification': 'Named entities with character offsets',
  'fill-mask': 'Candidates for each [MASK] token',
  'question-answering': 'Extractive answers with character offsets into the context',
};

/**
 * Reads and discards what is left of a refused request's body so that the client, still sending, can
 * read the answer; past `maxBytes` or `maxMs` the connection is dropped instead.
 */
function linger(raw: IncomingMessage, maxBytes: number, maxMs: number): void {
  if (raw.complete) return;
  let seen = 0;
  const timer = setTimeout(() => raw.socket?.destroy(), maxMs).unref();
  raw.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > maxBytes) raw.socket?.destroy();
  });
  raw.once('end', () => clearTimeout(timer));
  raw.once('close', () => clearTimeout(timer));
  raw.resume();
}

/** The model as served: int8 if asked, else prepacked fp32 or bf16 on the CPU (falling back to the plain model if prepacking fails). */
const servingDtype = (opts: ServeOptions) => (opts.dtype === 'bf16' ? 'bfloat16' : opts.dtype);

async function loadForServing(opts: ServeOptions): Promise<BertPreTrainedModel> {
  const cpu = !(opts.device ?? 'cpu').startsWith('cuda');
  const dtype = servingDtype(opts);
  if (dtype !== undefined && dtype !== 'float32' && dtype !== 'bfloat16') throw new TypeError(`dtype must be float32 or bf16, got ${JSON.stringify(opts.dtype)}`);
  if (dtype === 'bfloat16' && opts.quantize) throw new TypeError('bf16 serving runs the bf16 model: not with quantize');
  if (dtype === 'bfloat16' && cpu) checkCpuBf16('serve --dtype bf16');
  if (opts.weightLayouts !== undefined && opts.weightLayouts !== 'auto' && opts.weightLayouts !== 'one') throw new TypeError(`weightLayouts must be 'auto' or 'one', got ${JSON.stringify(opts.weightLayouts)}`);
  const prepack = opts.prepack ?? (cpu && !opts.quantize);
  const mmap = opts.mmap ?? cpu;
  // checked here, not left to fromPretrained: its TypeError would send the load down the plain-model fallback
  if (opts.embeddingsByRows && !mmap) throw new TypeError('embeddingsByRows pages a mapped checkpoint in: not with mmap false or on CUDA');
  const embeddingsByRows = opts.embeddingsByRows;
  try {
    return await fromPretrained(opts.model, { device: opts.device, dtype, quantize: opts.quantize, prepack: prepack && !opts.quantize ? { layouts: opts.weightLayouts } : false, mmap, embeddingsByRows });
  } catch (e) {
    if (!prepack || opts.prepack) throw e;
    process.emitWarning(`prepacked weights unavailable (${(e as Error).message.split('\n')[0]}); serving the plain model`, { code: 'TORCHBERT_NO_PREPACK' });
    return fromPretrained(opts.model, { device: opts.device, dtype, mmap, embeddingsByRows });
  }
}

// The CPU cache is one per process. While servers run, its limit is the sum of their caps (each keeps
// blocks for its own batches); when the last one closes, the limit found before the first returns.
const cacheCaps = new Set<{ bytes: number }>();
let limitBeforeServers = 0;
function applyCacheCaps(): void {
  cpuCache.setLimit(cacheCaps.size ? [...cacheCaps].reduce((n, c) => n + c.bytes, 0) : limitBeforeServers);
}
function holdCacheCap(bytes: number): { raise(bytes: number): void; release(): void } {
  if (cacheCaps.size === 0) limitBeforeServers = cpuCache.stats().limitBytes;
  const cap = { bytes };
  cacheCaps.add(cap);
  applyCacheCaps();
  return {
    raise(b: number) {
      if (b <= cap.bytes || !cacheCaps.has(cap)) return;
      cap.bytes = b;
      applyCacheCaps();
    },
    release() {
      if (cacheCaps.delete(cap)) applyCacheCaps();
    },
  };
}
// A forward's freed blocks serve the next one if the cache holds its working set (a layer's activations,
// int8's quantised copies, attention scores); a smaller cap maps and zeroes fresh pages every layer
// (bench/serve.js: int8 at c=64 ran 0.7-0.8x as fast). The working set is measured per batch, as the
// allocator's peak bytes in use over the batch, and the cap kept at twice the largest measured so far:
// batches differ in shape, and a block serves only requests of 2/3 of its size or more (an int8 server at
// c=64 then found 99% of its blocks cached; three times, 100% for 25 MB more; cpuCacheBatches). Until the
// first batch, a guess of four FFN activations of 64 tokens.
const CACHED_WORKING_SETS = 2;
const CACHED_FFN_ACTIVATIONS = 4;

/** Starts a server for one model; resolves once it listens (warm-up continues; see /ready). */
export async function serve(opts: ServeOptions): Promise<Server & { warm: Promise<void> }> {
  if (opts.threads) setNumThreads(opts.threads);
  const maxItems = opts.maxItems ?? 256;
  const maxTextChars = opts.maxTextChars ?? 20000;
  const onLong = opts.onLongInput ?? 'truncate';
  if (onLong !== 'truncate' && onLong !== 'reject') throw new TypeError(`onLongInput must be 'truncate' or 'reject', got '${onLong}'`);
  if (opts.cpuCacheMb !== undefined && !(opts.cpuCacheMb >= 0)) throw new TypeError(`cpuCacheMb must be a number >= 0, got ${opts.cpuCacheMb}`);
  const cachedWorkingSets = opts.cpuCacheBatches ?? CACHED_WORKING_SETS;
  if (!(cachedWorkingSets > 0)) throw new TypeError(`cpuCacheBatches must be a number > 0, got ${opts.cpuCacheBatches}`);

  const tokenizer = await BertTokenizer.fromPretrained(opts.model);
  const model: BertPreTrainedModel = await loadForServing(opts);
  const tasks = tasksFor(model.kind);
  const pipes = new Map<Task, AnyPipeline>();
  for (const t of tasks) pipes.set(t, await pipeline(t, { model, tokenizer }, { device: opts.device, batch: opts.batch }));
  const elem = servingDtype(opts) === 'bfloat16' ? 2 : 4;

  // ---------- metrics ----------
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'torchbert_process_' });
  const requests = new client.Counter({ name: 'torchbert_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers: [registry] });
  const latency = new client.Histogram({
    name: 'torchbert_request_duration_seconds', help: 'request latency', labelNames: ['route'], registers: [registry],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  const batchSize = new client.Histogram({ name: 'torchbert_batch_size', help: 'rows per model call', labelNames: ['task'], registers: [registry], buckets: [1, 2, 4, 8, 16, 32, 64, 128] });
  const batchSeconds = new client.Histogram({ name: 'torchbert_batch_duration_seconds', help: 'model call time', labelNames: ['task'], registers: [registry], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
  const tokens = new client.Counter({ name: 'torchbert_tokens_total', help: 'tokens run through the model (rate() gives tokens per second)', labelNames: ['task'], registers: [registry] });
  const padded = new client.Counter({ name: 'torchbert_padded_tokens_total', help: 'tokens computed including padding', labelNames: ['task'], registers: [registry] });
  new client.Gauge({
    name: 'torchbert_queue_depth', help: 'rows waiting for a batch', labelNames: ['task'], registers: [registry],
    collect() {
      for (const [t, p] of pipes) this.set({ task: t }, p.batcher.queueDepth);
    },
  });
  // The CPU cache (process-wide): a falling hit rate under load means its cap is below the batches' working sets.
  new client.Gauge({
    name: 'torchbert_cpu_cache_bytes', help: 'freed blocks the CPU cache holds (kind="cached") and its cap (kind="limit")', labelNames: ['kind'], registers: [registry],
    collect() {
      const c = cpuCache.stats();
      this.set({ kind: 'cached' }, c.cachedBytes);
      this.set({ kind: 'limit' }, c.limitBytes);
    },
  });
  new client.Gauge({
    name: 'torchbert_cpu_cache_allocations', help: 'allocations of 256 KiB or more since start, served from the CPU cache (result="hit") or fresh (result="miss")', labelNames: ['result'], registers: [registry],
    collect() {
      const c = cpuCache.stats();
      this.set({ result: 'hit' }, c.hits);
      this.set({ result: 'miss' }, c.misses);
    },
  });
  for (const [t, p] of pipes) {
    p.batcher.onBatch = (b) => {
      batchSize.observe({ task: t }, b.size);
      batchSeconds.observe({ task: t }, b.ms / 1000);
      tokens.inc({ task: t }, b.tokens);
      padded.inc({ task: t }, b.paddedTokens);
    };
  }

  // ---------- the app ----------
  const bodyLimit = opts.bodyLimit ?? 1 << 20;
  const app = Fastify({
    bodyLimit,
    logger: opts.logger ?? false,
    // Types are checked, never coerced: 42 is not a text.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  // Invalid UTF-8 is refused rather than silently replaced by U+FFFD.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const jsonParse = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    let s: string;
    try {
      s = utf8.decode(body as Buffer);
    } catch {
      done(new HttpError(400, 'INVALID_UTF8', 'the request body is not valid UTF-8'), undefined);
      return;
    }
    jsonParse(req, s, (err, value) => done(err ? new HttpError(400, 'MALFORMED_JSON', `malformed JSON: ${err.message}`) : null, value));
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'torchbert', version: require('../../package.json').version, description: `BERT inference for ${opts.model} (${model.kind}); tasks: ${tasks.join(', ')}` },
    },
  });

  let ready = false;
  let closing: Promise<void> | null = null;
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown }, req, reply) => {
    if (err instanceof HttpError) return reply.code(err.status).send({ error: { code: err.code, message: err.message } });
    if (err instanceof QueueFullError) return reply.code(429).header('retry-after', '1').send({ error: { code: err.code, message: err.message } });
    if (err instanceof BatcherClosedError) return reply.code(503).send({ error: { code: err.code, message: 'the server is shutting down' } });
    if (err.validation) return reply.code(400).send({ error: { code: 'INVALID_REQUEST', message: `invalid request: ${err.message}` } });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      // Fastify would close the connection while the client is still sending, and most clients (Node's
      // fetch among them) then read a reset instead of this answer. As nginx's lingering close does, the
      // rest of the body is read and discarded (up to a bound), so the 413 arrives whole.
      linger(req.raw, Math.max(64 << 20, 16 * bodyLimit), 10_000);
      reply.removeHeader('connection');
      return reply.code(413).send({ error: { code: 'BODY_TOO_LARGE', message: `the request body is over the limit of ${bodyLimit} bytes` } });
    }
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: { code: err.code ?? 'BAD_REQUEST', message: err.message } });
    // Errors the pipelines raise about an input (no [MASK], empty question) are the client's.
    if (err.name === 'RangeError' || err.name === 'TypeError') return reply.code(422).send({ error: { code: 'UNPROCESSABLE_INPUT', message: err.message } });
    req.log.error(err);
    return reply.code(500).send({ error: { code: 'INTERNAL', message: err.message } });
  });
  app.addHook('onSend', async (_req, reply) => {
    reply.header('x-torchbert-pid', String(process.pid));
    // While closing, end keep-alive connections after each answer so close() does not wait out their timeout.
    if (closing) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    requests.inc({ route, status: String(reply.statusCode) });
    latency.observe({ route }, reply.elapsedTime / 1000);
  });

  /** The request's texts, checked against the limits; QA inputs are checked field by field. */
  const limits = (inputs: unknown): void => {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length > maxItems) throw new HttpError(413, 'TOO_MANY_ITEMS', `${list.length} inputs in one request; the limit is ${maxItems}`);
    list.forEach((x, i) => {
      const fields = typeof x === 'string' ? [x] : Object.values(x as object).filter((v): v is string => typeof v === 'string');
      for (const s of fields) {
        if (s.length > maxTextChars) throw new HttpError(413, 'TEXT_TOO_LONG', `inputs[${i}] has ${s.length} characters; the limit is ${maxTextChars}`);
        if (onLong === 'reject' && typeof x === 'string') {
          const n = tokenizer.encodeRows([s], null, {}).rows[0].ids.length;
          const max = pipes.values().next().value!.maxLength;
          if (n > max) throw new HttpError(413, 'TOO_MANY_TOKENS', `inputs[${i}] has ${n} tokens; the model takes ${max}`);
        }
      }
    });
  };

  const route = <B extends { inputs: unknown }>(task: Task, run: (body: B) => Promise<unknown>) =>
    app.post(ROUTES[task], { schema: { summary: SUMMARY[task], body: BODIES[task] } }, async (req: FastifyRequest, reply: FastifyReply) => {
      const body = req.body as B;
      limits(body.inputs);
      return reply.send(await run(body));
    });

  for (const t of tasks) {
    const p = pipes.get(t)!;
    const arr = <T>(x: T | T[]): T[] => (Array.isArray(x) ? x : [x]);
    if (t === 'text-classification') {
      route<{ inputs: unknown; top_k?: number | null; function_to_apply?: 'softmax' | 'sigmoid' | 'none' }>(t, async (b) => {
        const inputs = arr(b.inputs as never[]).map((x: string | { text: string; text_pair?: string }) => (typeof x === 'string' ? x : { text: x.text, textPair: x.text_pair }));
        const res = await (p as TextClassificationPipeline).call(inputs, { topK: b.top_k === undefined ? 1 : b.top_k, functionToApply: b.function_to_apply });
        return { results: res };
      });
    } else if (t === 'feature-extraction') {
      route<{ inputs: string | string[]; pooling: 'mean' | 'cls'; normalize: boolean }>(t, async (b) => {
        const res = (await (p as FeatureExtractionPipeline).call(arr(b.inputs), { pooling: b.pooling, normalize: b.normalize })) as number[][];
        return { embeddings: res, dim: res[0].length };
      });
    } else if (t === 'token-classification') {
      route<{ inputs: string | string[]; aggregation_strategy: 'none' | 'simple' | 'first' | 'average' | 'max'; ignore_labels?: string[]; stride?: number }>(t, async (b) => ({
        results: await (p as TokenClassificationPipeline).call(arr(b.inputs), { aggregationStrategy: b.aggregation_strategy, ignoreLabels: b.ignore_labels, stride: b.stride }),
      }));
    } else if (t === 'fill-mask') {
      route<{ inputs: string | string[]; top_k: number; targets?: string[] }>(t, async (b) => {
        const list = arr(b.inputs);
        // One result list per input (a list per mask when it has several), whatever the count.
        const res = await Promise.all(list.map((x) => (p as FillMaskPipeline).call(x, { topK: b.top_k, targets: b.targets })));
        return { results: res };
      });
    } else if (t === 'question-answering') {
      route<{ inputs: { question: string; context: string } | { question: string; context: string }[]; top_k: number; max_answer_len: number; doc_stride?: number; handle_impossible_answer: boolean }>(t, async (b) => {
        const list = arr(b.inputs);
        const res = await (p as QuestionAnsweringPipeline).call(list, { topK: b.top_k, maxAnswerLen: b.max_answer_len, docStride: b.doc_stride, handleImpossibleAnswer: b.handle_impossible_answer });
        return { results: (res as unknown[]).map((r) => (Array.isArray(r) ? r : [r])) };
      });
    }
  }

  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: { code: 'NOT_FOUND', message: `not found: ${req.method} ${req.url} (this model serves ${tasks.map((t) => `POST ${ROUTES[t]}`).join(', ')})` } }),
  );
  app.get('/health', { schema: { summary: 'Liveness: the process answers' } }, async () => ({ status: 'ok' }));
  app.get('/ready', { schema: { summary: 'Readiness: 200 once the model is warmed up' } }, async (_req, reply) =>
    ready ? { ready: true, model: opts.model, kind: model.kind, tasks, routes: tasks.map((t) => ROUTES[t]) } : reply.code(503).send({ ready: false }),
  );
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', hide: true } }, async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const ffnBytesPerToken = Number(model.config.fields.intermediate_size) * elem;
  const cacheCap = holdCacheCap(opts.cpuCacheMb !== undefined ? opts.cpuCacheMb * 2 ** 20 : CACHED_FFN_ACTIVATIONS * 64 * ffnBytesPerToken);
  // Each batch's working set: batches run one at a time (the model is busy while one runs), so the
  // allocator's peak since the last batch ended, less what was in use then, is this one's.
  let largestWorkingSet = 0;
  let base = cpuCache.stats().inUseBytes;
  cpuCache.resetPeak();
  new client.Gauge({
    name: 'torchbert_batch_working_set_bytes', help: "the largest batch's working set so far: the CPU allocator's peak bytes in use (blocks of 256 KiB or more) while it ran", registers: [registry],
    collect() {
      this.set(largestWorkingSet);
    },
  });
  for (const p of pipes.values()) {
    const metrics = p.batcher.onBatch!;
    p.batcher.onBatch = (b) => {
      metrics(b);
      const s = cpuCache.stats();
      largestWorkingSet = Math.max(largestWorkingSet, s.peakInUseBytes - base);
      if (opts.cpuCacheMb === undefined) cacheCap.raise(cachedWorkingSets * largestWorkingSet);
      base = s.inUseBytes;
      cpuCache.resetPeak();
    };
  }
  let url: string;
  try {
    url = await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8080 });
  } catch (e) {
    cacheCap.release();
    for (const p of pipes.values()) await p.dispose();
    model.dispose();
    throw e;
  }
  const warm = (async () => {
    for (const p of pipes.values()) await p.warmup();
    ready = true;
  })();
  warm.catch((e) => app.log.error(e));

  const close = () =>
    (closing ??= (async () => {
      ready = false;
      await warm.catch(() => undefined);
      // Stop listening; the batchers run what they hold at once, so the requests in flight get answers.
      const stopped = app.close();
      for (const p of pipes.values()) await p.close();
      await stopped;
      // the pipelines' handles (an encoder view for /v1/embed), then the model: its memory goes now, not at GC
      for (const p of pipes.values()) await p.dispose();
      model.dispose();
      cacheCap.release();
    })());
  return { app, url, tasks, pipelines: pipes, warm, close };
}

