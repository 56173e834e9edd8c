// The detail view: how the selected map (or value) was computed, in a view chosen by the
// layer's operation. Nothing here knows a model: only operations, shapes and configs.
//
// `selected.layer` may equal model.layers.length: the class scores, i.e. the softmax the page
// applies to the last layer's output when the model does not end with one.
import { h, shapeText } from './forward-maps.js';
import { activeElement } from './dom.js';
import { timed } from './state.js';
import { convolution } from './forward-conv.js';
import { pooling } from './forward-pool.js';
import { elementwise } from './forward-elementwise.js';
import { vectorView } from './forward-dense.js';
import { softmaxView } from './forward-softmax.js';

const VIEWS = {
  convolution,
  'max-pool': pooling,
  'avg-pool': pooling,
  relu: elementwise,
  sigmoid: elementwise,
  tanh: elementwise,
  dropout: elementwise,
  flatten: vectorView,
  dense: vectorView,
  softmax: softmaxView,
};

/** The title bar: what is shown, a channel / unit picker, and close. */
function header({ store, model, layer, channel, scores }, operation) {
  const info = model.layers[layer];
  const shape = scores ? [model.classes.length] : info.output_shape;
  const channels = shape[0];
  const noun = shape.length >= 3 ? 'channel' : scores ? 'class' : 'unit';
  const picker = h('input', {
    type: 'number', min: 0, max: channels - 1, value: channel, id: 'detail-channel', class: 'picker',
    onchange: (event) => {
      const value = Math.max(0, Math.min(channels - 1, Math.round(Number(event.target.value) || 0)));
      store.set({ selected: { layer, channel: value } });
    },
  });
  const title = scores ? 'Class scores · softmax of the last layer’s output' : `Layer ${layer} · ${info.label}`;
  const parameters = info?.parameters ? ` · ${info.parameters.toLocaleString('en')} parameters` : '';
  const where = scores ? `${shape[0]} scores → ${shape[0]} probabilities`
    : `${operation} · ${shapeText(info.input_shape)} → ${shapeText(info.output_shape)}${parameters}`;
  return h('header', { class: 'detail-head' },
    h('div', {}, h('h2', { text: title, tabindex: -1, id: 'detail-title' }), h('p', { class: 'muted', text: where })),
    h('label', { class: 'picker-label' }, `${noun} `, picker, h('span', { class: 'muted', text: ` of ${channels}` })),
    h('button', {
      type: 'button', class: 'close', 'aria-label': 'Close the detail view', text: '×',
      onclick: () => store.set({ selected: null, returnFocus: true }),
    }));
}

export function mount(element, store) {
  const memories = new Map(); // per layer and channel: position, playing, … kept across re-renders
  let current = null;
  let shown = null; // the key of the selection on the page
  let opener = null; // where focus was when the detail opened: it goes back there on close
  // Escape closes the detail from anywhere inside it, and focus returns to what opened it
  element.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !store.get('selected')) return;
    event.preventDefault();
    store.set({ selected: null, returnFocus: true });
  });
  const render = () => timed('detail', renderNow);
  const renderNow = () => {
    current?.destroy?.();
    current = null;
    const selected = store.get('selected');
    const trace = store.get('trace');
    if (!selected || !trace) {
      const inside = element.contains(activeElement());
      element.hidden = true;
      element.replaceChildren();
      shown = null;
      if (!selected && opener?.isConnected && (store.get('returnFocus') || inside)) opener.focus();
      if (!selected) opener = null;
      store.set({ returnFocus: false });
      return;
    }
    if (!element.contains(activeElement())) opener = activeElement();
    const model = store.get('model');
    const scores = selected.layer >= model.layers.length;
    const operation = scores ? 'softmax' : model.layers[selected.layer].operation;
    const key = `${selected.layer}:${selected.channel}`;
    if (!memories.has(key)) memories.set(key, {});
    const { layer, channel } = selected;
    const ctx = { store, model, trace, scores, layer, channel, memory: memories.get(key) };
    // the same selection on a new trace: hold the height until the new numbers arrive,
    // so that the page does not jump while one draws
    element.style.minHeight = shown === key ? `${element.offsetHeight}px` : '';
    const view = (VIEWS[operation] || elementwise)(ctx);
    current = view;
    shown = key;
    element.hidden = false;
    element.dataset.operation = operation;
    element.replaceChildren(header(ctx, operation), view.element);
    if (store.get('focusDetail')) { // opened from the keyboard: the reader goes there too
      store.set({ focusDetail: false });
      element.querySelector('#detail-title').focus({ preventScroll: true });
      element.scrollIntoView({ block: 'start' });
    }
    Promise.resolve(view.ready).finally(() => {
      if (current === view) element.style.minHeight = '';
    });
  };
  store.subscribe('selected', render);
  store.subscribe('trace', render);
  store.subscribe('rangeMode', render);
}
