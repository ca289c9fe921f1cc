// The main job's control (the same BERT from random weights), fine-tuned in its own process beside the model's
// fine-tuning (ScratchOptions.parallelControl): forked by fromScratch, sent a ControlSpec, it answers with log
// lines, then its result or its error, and exits.
import { runControlSpec, ControlSpec } from './scratch';

const send = (msg: object) => new Promise<void>((resolve) => process.send!(msg, () => resolve()));

process.once('message', (spec: ControlSpec) => {
  runControlSpec(spec, (line) => void send({ log: line }))
    .then((result) => send({ result }), (e: Error) => send({ error: e.message }))
    .finally(() => process.disconnect());
});
