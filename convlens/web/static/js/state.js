// The page's shared state and a tiny publish/subscribe store.
//
// Keys: model (GET /api/model), samples, image (a sample id or {shape, data}),
// trace (POST /api/trace, arrays decoded), target (class index for the backward pass),
// selected ({layer, channel} of the map the user clicked), rangeMode ('unit'|'layer'|'global'),
// training (the state of the live training session, or null: every trace and explain then
// uses its current weights, and the page re-traces as they change), source (words saying
// where an image shown from outside the input panel came from, for its caption),
// gradientsWanted (whether the backward pass is on screen: without it, a trace leaves out
// the gradients, half its size, and the backward view asks for them once it is seen),
// gradients (the shown trace, once a later answer for the same image and weights added its
// backward pass or changed its target in place: only the views of the backward pass redraw).
import { api, decodeArray, setTraining } from './api.js';
import { byId } from './dom.js';

const REFRESH_MS = 500; // while the weights change, re-trace at most twice a second

const listeners = new Map();
const state = { rangeMode: 'layer', target: null, selected: null, training: null, gradientsWanted: true };
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
  /**
   * Trace the current image again (after the image or the target changed): with the
   * backward pass for the target when `full` or when the backward view is on screen, else
   * the forward pass only (the trace's `target` still says the target; `gradients` is null).
   */
  async retrace({ full = false } = {}) {
    if (state.image === undefined) return;
    const number = ++latestTrace;
    const asked = { image: state.image, weights: weightsOf(state.training) };
    lastTrace = { at: performance.now(), weights: asked.weights };
    tracing += 1;
    try {
      const gradients = full || state.gradientsWanted;
      const target = state.target;
      const raw = await api.trace(state.image, gradients ? target : null);
      if (number !== latestTrace) return; // a newer trace is on its way
      const trace = timed('decode', () => decodeTrace(raw));
      if (!gradients && target !== null) trace.target = target; // asked for, not computed
      const shown = state.trace;
      if (gradients && shown && shown.asked.image === asked.image && shown.asked.weights === asked.weights) {
        // the same forward pass: the backward pass (or its new target) joins the shown trace
        for (const key of ['target', 'loss', 'gradients', 'input_gradient']) {
          Object.defineProperty(shown, key, { ...Object.getOwnPropertyDescriptor(trace, key), configurable: true });
        }
        timed('draw', () => store.set({ gradients: shown }));
      } else {
        trace.asked = asked;
        timed('draw', () => store.set({ trace }));
      }
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

/**
 * The trace with its arrays decoded into Float32Arrays: the activations at once, the
 * gradients and layer states on first use (the overview needs neither; the backward view
 * decodes them when it draws).
 */
export function decodeTrace(raw) {
  const decodeOrNull = (a) => (a ? decodeArray(a) : null);
  const trace = {
    ...raw,
    input: decodeArray(raw.input),
    layers: raw.layers.map((layer) => ({
      ...layer,
      output: decodeArray(layer.output),
      state: lazyObject(layer.state, decodeArray),
    })),
    gradients: raw.gradients ? lazyList(raw.gradients, decodeOrNull) : null,
  };
  once(trace, 'input_gradient', () => decodeOrNull(raw.input_gradient));
  return trace;
}

/** A list whose item k is `decode(items[k])`, computed once, on first read. */
function lazyList(items, decode) {
  const list = new Array(items.length);
  items.forEach((item, k) => once(list, k, () => decode(item)));
  return list;
}

/** An object whose values are decoded on first read. */
function lazyObject(object, decode) {
  const result = {};
  for (const [key, value] of Object.entries(object)) once(result, key, () => decode(value));
  return result;
}

/** target[key] is `compute()`, computed on first read (a getter that replaces itself by the value). */
function once(target, key, compute) {
  Object.defineProperty(target, key, {
    configurable: true, enumerable: true,
    get() {
      const value = compute();
      Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
      return value;
    },
  });
}

/** Time `fn` as the Performance measure `convlens:<name>` (benchmarks read them). */
export function timed(name, fn) {
  const start = performance.now();
  try {
    return fn();
  } finally {
    performance.measure(`convlens:${name}`, { start, end: performance.now() });
  }
}

export function showError(message) {
  const banner = byId('error');
  banner.textContent = message;
  banner.hidden = false;
}

export function clearError() {
  byId('error').hidden = true;
}
