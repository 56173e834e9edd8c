// Boot: load the model, mount every view, show the first sample.
import { api } from './api.js';
import { showError, store } from './state.js';
import * as input from './input.js';
import * as overview from './overview.js';
import * as detail from './detail.js';
import * as backward from './backward.js';
import * as sandbox from './sandbox.js';
import * as training from './training.js';

async function loadArticle() {
  const container = document.getElementById('article-container');
  const response = await fetch('article.html');
  if (response.ok) container.innerHTML = await response.text();
}

async function boot() {
  const model = await api.model();
  const name = model.metadata && model.metadata.dataset
    ? `${model.layers.length} layers, trained on ${model.metadata.dataset}`
    : `${model.layers.length} layers`;
  document.getElementById('model-name').textContent =
    `model: ${name} · input ${model.input_shape.join('×')} · ${model.classes.length} classes`;
  const rangeMode = document.getElementById('range-mode');
  rangeMode.addEventListener('change', () => store.set({ rangeMode: rangeMode.value }));
  store.set({ model, samples: model.samples ? await api.samples() : [] });

  input.mount(document.getElementById('input-panel'), store);
  overview.mount(document.getElementById('overview'), store);
  detail.mount(document.getElementById('detail'), store);
  backward.mount(document.getElementById('backward'), store);
  sandbox.mount(document.getElementById('sandbox'), store);
  const trainingReady = training.mount(document.getElementById('training'), store);
  store.subscribe('trace', (trace) => {
    const best = trace.prediction;
    document.getElementById('prediction').textContent =
      `prediction: ${model.classes[best]} (${(100 * trace.probabilities[best]).toFixed(1)} %)`;
  });

  await loadArticle();
  const samples = store.get('samples');
  if (samples.length) await store.show(0);
  await trainingReady;
  document.body.dataset.ready = 'true'; // tests wait for this
}

boot().catch((error) => showError(`the page could not start: ${error.message}`));
