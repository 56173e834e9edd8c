// The page's shared state and a tiny publish/subscribe store.
//
// Keys: model (GET /api/model), samples, image (a sample id or {shape, data}),
// trace (POST /api/trace, arrays decoded), target (class index for the backward pass),
// selected ({layer, channel} of the map the user clicked), rangeMode ('unit'|'layer'|'global'),
// training (the state of the live training session, or null: every trace and explain then
// uses its current weights, and the page re-traces as they change), source (words saying
// where an image shown from outside the input panel came from, for its caption).
import { api, decodeArray, setTraining } from './api.js';
import { byId } from './dom.js';

const REFRESH_MS = 500; // while the weights change, re-trace at most twice a second

const listeners = new Map();
const state = { rangeMode: 'layer', target: null, selected: null, training: null };
let latestTrace = 0; // the number of the newest trace asked for: answers to older ones are dropped
let tracing = 0; // traces under way
let lastTrace = { at: -Infinity, weights: null }; // when the newest trace was asked for, and with which weights

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
    const number = ++latestTrace;
    lastTrace = { at: performance.now(), weights: weightsOf(state.training) };
    tracing += 1;
    try {
      const raw = await api.trace(state.image, state.target);
      if (number !== latestTrace) return; // a newer trace is on its way
      store.set({ trace: decodeTrace(raw) });
      clearError();
    } catch (error) {
      if (number === latestTrace) showError(error.message);
    } finally {
      tracing -= 1;
    }
  },
};

// The training session's weights: every request carries its id, and new weights re-trace
// the image — at once when the session changes, else at most once per REFRESH_MS and never
// beside a trace under way (a click's own trace already shows the newest weights).
const weightsOf = (session) => (session ? `${session.id}:${session.step}` : null);
const sessionOf = (weights) => (weights ? weights.split(':')[0] : null);
let timer = null;

function refresh() {
  const weights = weightsOf(state.training);
  if (weights === lastTrace.weights) return;
  if (sessionOf(weights) !== sessionOf(lastTrace.weights)) {
    store.retrace(); // answers with the old weights are dropped
    return;
  }
  const wait = tracing ? 50 : lastTrace.at + REFRESH_MS - performance.now();
  if (wait <= 0) store.retrace();
  else if (timer === null) {
    timer = setTimeout(() => {
      timer = null;
      refresh();
    }, wait);
  }
}

store.subscribe('training', (session) => {
  setTraining(session ? session.id : null);
  refresh();
});

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
  const banner = byId('error');
  banner.textContent = message;
  banner.hidden = false;
}

export function clearError() {
  byId('error').hidden = true;
}
