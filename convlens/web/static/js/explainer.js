// The explainer, mounted into a root: load the model, mount every view into the root's
// sections (found by id inside it), show the first image. The page mounts it on its
// document (main.js); the notebook widget on its own shadow root (widget.js).
import { api } from './api.js';
import { byId, setScope } from './dom.js';
import { store } from './state.js';
import * as input from './input.js';
import * as overview from './overview.js';
import * as detail from './detail.js';
import * as backward from './backward.js';
import * as sandbox from './sandbox.js';
import * as training from './training.js';

/**
 * Mount the explainer into `root` (a document or a shadow root holding index.html's body)
 * and show `image` (a sample id or {shape, data}; default: the first sample, if any).
 * Resolves to the store once everything is drawn.
 */
export async function mount(root, { image } = {}) {
  setScope(root);
  const model = await api.model();
  const name = model.metadata && model.metadata.dataset
    ? `${model.layers.length} layers, trained on ${model.metadata.dataset}`
    : `${model.layers.length} layers`;
  byId('model-name').textContent =
    `model: ${name} · input ${model.input_shape.join('×')} · ${model.classes.length} classes`;
  const rangeMode = byId('range-mode');
  rangeMode.addEventListener('change', () => store.set({ rangeMode: rangeMode.value }));
  store.set({ model, samples: model.samples ? await api.samples() : [] });

  input.mount(byId('input-panel'), store);
  overview.mount(byId('overview'), store);
  detail.mount(byId('detail'), store);
  backward.mount(byId('backward'), store);
  sandbox.mount(byId('sandbox'), store);
  const trainingReady = training.mount(byId('training'), store);
  store.subscribe('trace', (trace) => {
    const best = trace.prediction;
    byId('prediction').textContent =
      `prediction: ${model.classes[best]} (${(100 * trace.probabilities[best]).toFixed(1)} %)`;
  });

  if (image !== undefined) await store.show(image);
  else if (store.get('samples').length) await store.show(0);
  await trainingReady;
  return store;
}
