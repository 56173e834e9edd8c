// Sliding over an output map: the current position, play / pause / step, and the engine's
// explanation of the value there (fetched once per position and trace, then cached).
import { api } from './api.js';
import { showError, timed } from './state.js';
import { h } from './forward-maps.js';

const STEP_MS = 450; // one position per step while playing
const SETTLE_MS = 60; // a hovered position is fetched once the pointer rests this long

// the trace the cached explanations belong to: a new one (another image, another target,
// a training session's newer weights) empties the cache
let cachedTrace = null;
const cache = new Map();

/**
 * The engine's explanation of value `index` of layer `layer` for the shown image (cached);
 * with a `target` class, of the gradient at the layer's input instead.
 */
export function explainCached(store, layer, index, target = null) {
  if (store.get('trace') !== cachedTrace) {
    cache.clear();
    cachedTrace = store.get('trace');
  }
  const key = `${layer}:${index.join(',')}:${target}`;
  if (!cache.has(key)) {
    const request = api.explain(store.get('image'), layer, index, target);
    request.catch(() => cache.delete(key));
    cache.set(key, request);
  }
  return cache.get(key);
}

/**
 * A scanner over an `rows` × `cols` output map of `layer`'s channel `channel` (with a
 * `target` class: over the map of the gradient at its input, channel `channel`).
 * `memory` keeps the position and the playing state across re-renders; `show(payload, [i, j])`
 * draws an explanation. Returns {controls, hover, position, destroy, ready}; `ready` settles
 * once the first explanation is drawn.
 */
export function scanner({ store, layer, channel, rows, cols, memory, show, target = null }) {
  let timer = null;
  let settle = null;
  let alive = true;
  let drawn;
  const ready = new Promise((resolve) => {
    drawn = resolve;
  });
  memory.position = memory.position || [0, 0];

  const fetchAndShow = async () => {
    const [i, j] = memory.position;
    try {
      const payload = await explainCached(store, layer, [channel, i, j], target);
      if (alive && memory.position[0] === i && memory.position[1] === j) timed('explanation', () => show(payload, [i, j]));
    } catch (error) {
      if (alive) showError(`the value at (${i}, ${j}) could not be explained: ${error.message}`);
    }
    drawn();
  };
  const moveTo = ([i, j], { now = false } = {}) => {
    if (memory.position[0] === i && memory.position[1] === j && !now) return;
    memory.position = [i, j];
    label.textContent = `position (${i}, ${j})`;
    clearTimeout(settle);
    if (now) fetchAndShow();
    else settle = setTimeout(fetchAndShow, SETTLE_MS);
  };
  const step = () => {
    const [i, j] = memory.position;
    const next = i * cols + j + 1 >= rows * cols ? 0 : i * cols + j + 1;
    moveTo([Math.floor(next / cols), next % cols], { now: true });
  };
  const setPlaying = (on) => {
    memory.playing = on;
    clearInterval(timer);
    if (on) timer = setInterval(step, STEP_MS);
    play.textContent = on ? '❚❚ Pause' : '▶ Play';
    play.setAttribute('aria-pressed', String(on));
  };

  const play = h('button', {
    type: 'button', class: 'play', 'aria-label': 'Play or pause the sliding window', onclick: () => setPlaying(!memory.playing),
  });
  const stepButton = h('button', {
    type: 'button', text: 'Step ›', 'aria-label': 'Step ›: move the window one position',
    onclick: () => {
      setPlaying(false);
      step();
    },
  });
  const label = h('span', { class: 'position muted', 'aria-live': 'polite' });
  setPlaying(Boolean(memory.playing));
  moveTo(memory.position, { now: true }); // also writes the label

  return {
    controls: h('div', { class: 'scan-controls' }, play, stepButton, label),
    /** Move by hovering: stops playing. */
    hover: (position) => {
      if (memory.playing) setPlaying(false);
      moveTo(position);
    },
    position: () => memory.position,
    ready,
    destroy: () => {
      alive = false;
      clearInterval(timer);
      clearTimeout(settle);
    },
  };
}
