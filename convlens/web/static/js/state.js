// The page's shared state and a tiny publish/subscribe store.
//
// Keys: model (GET /api/model), samples, image (a sample id or {shape, data}),
// trace (POST /api/trace, arrays decoded), target (class index for the backward pass),
// selected ({layer, channel} of the map the user clicked), rangeMode ('unit'|'layer'|'global').
import { api, decodeArray } from './api.js';

const listeners = new Map();
const state = { rangeMode: 'layer', target: null, selected: null };

export const store = {
  get: (key) => state[key],
  /** Merge `changes` into the state and notify subscribers of each changed key. */
  set(changes) {
    Object.assign(state, changes);
    for (const key of Object.keys(changes)) {
      for (const fn of listeners.get(key) || []) fn(state[key], state);
    }
  },
  subscribe(key, fn) {
    if (!listeners.has(key)) listeners.set(key, []);
    listeners.get(key).push(fn);
  },
  /**
   * Show the network an image (sample id or {shape, data}) and trace it in one request:
   * a labelled sample's label becomes the target; a drawing or upload keeps the current one.
   */
  async show(image) {
    state.image = image;
    const sample = typeof image === 'number' ? (state.samples || [])[image] : null;
    const label = sample && state.model ? state.model.classes.indexOf(sample.label) : -1;
    if (label >= 0) state.target = label;
    await store.retrace();
  },
  /** Trace the current image again (after the image or the target changed). */
  async retrace() {
    if (state.image === undefined) return;
    try {
      const raw = await api.trace(state.image, state.target);
      store.set({ trace: decodeTrace(raw) });
      clearError();
    } catch (error) {
      showError(error.message);
    }
  },
};

/** Decode every array of a trace once, so views read Float32Arrays. */
export function decodeTrace(raw) {
  const decodeOrNull = (a) => (a ? decodeArray(a) : null);
  return {
    ...raw,
    input: decodeArray(raw.input),
    layers: raw.layers.map((layer) => ({
      ...layer,
      output: decodeArray(layer.output),
      state: Object.fromEntries(Object.entries(layer.state).map(([k, v]) => [k, decodeArray(v)])),
    })),
    gradients: raw.gradients ? raw.gradients.map(decodeOrNull) : null,
    input_gradient: decodeOrNull(raw.input_gradient),
  };
}

export function showError(message) {
  const banner = document.getElementById('error');
  banner.textContent = message;
  banner.hidden = false;
}

export function clearError() {
  document.getElementById('error').hidden = true;
}
