// The pooling view: the input map with its grid of windows, the window under the current
// output position with its numbers, and the maximum (winner highlighted) or the mean.
import { fmt } from './colors.js';
import {
  MapView, activations, brightest, h, indexed, limitFor, mathml, mn, nestedAbsMax, numberTable, param,
} from './forward-maps.js';
import { tapInput, windowGeometry, windowMarks } from './forward-conv.js';
import { scanner } from './forward-scan.js';

const MOST_WINDOWS = 1024; // draw every window's outline up to this many

/** The general formula: the max or the mean over the window, with this layer's stride. */
function poolFormula(isMax, config) {
  const [kh, kw] = config.kernel_size;
  const over = `<mrow><mi>a</mi><mo>&lt;</mo><mn>${kh}</mn><mo>,</mo><mi>b</mi><mo>&lt;</mo><mn>${kw}</mn></mrow>`;
  const reduce = isMax ? `<munder><mi>max</mi>${over}</munder>`
    : `<mfrac><mn>1</mn><mn>${kh * kw}</mn></mfrac><munder><mo>∑</mo>${over}</munder>`;
  return mathml(`<mrow>${indexed('y', 'c', 'i', 'j')}<mo>=</mo>${reduce}${tapInput(config)}</mrow>`);
}

const LISTED = 4; // windows up to this many values are written out in the result line

/** The result line with the engine's numbers: max(…) = value, or (sum) / count = value. */
function poolResult(payload, isMax) {
  const values = payload.inputs.flat();
  const y = indexed('y', ...payload.index);
  const many = values.length > LISTED;
  const listed = values.map((v) => (v === null ? '<mo>−∞</mo>' : mn(v))).join(isMax ? '<mo>,</mo>' : '<mo>+</mo>');
  const total = values.reduce((a, v) => a + (v ?? 0), 0);
  const body = isMax
    ? `<mi>max</mi><mo>(</mo>${many ? `<mtext>the ${values.length} values</mtext>` : listed}<mo>)</mo>`
    : `<mfrac><mrow>${many ? `<mtext>their sum </mtext>${mn(total)}` : listed}</mrow><mn>${payload.count}</mn></mfrac>`;
  return mathml(`<mrow>${y}<mo>=</mo>${body}<mo>=</mo></mrow>`, 'inline');
}

export function pooling({ store, model, trace, layer, channel: c, memory }) {
  const info = model.layers[layer];
  const { config, operation } = info;
  const isMax = operation === 'max-pool';
  const [, H, W] = info.input_shape;
  const [, outH, outW] = info.output_shape;
  const arrays = activations(trace);
  const [x, y] = [arrays[layer], arrays[layer + 1]];
  const outSize = outH * outW;
  memory.position = memory.position || brightest(y, c);

  const maps = h('div', { class: 'pool-maps' }, h('p', { class: 'muted', text: 'Loading the windows…' }));
  const numbers = h('div', { class: 'pool-numbers', 'aria-live': 'polite' });
  let views = null;

  const scan = scanner({
    store, layer, channel: c, rows: outH, cols: outW, memory,
    show: (payload) => {
      views = views || buildMaps(payload);
      const [, i, j] = payload.index;
      views.input.mark('window', windowMarks(payload));
      if (isMax) {
        const [a, b] = payload.winner;
        views.input.mark('winner', [{ r: payload.rows[a], c: payload.cols[b] }]);
      }
      views.output.mark('current', [{ r: i, c: j }]);
      renderNumbers(payload);
    },
  });

  function buildMaps(payload) {
    const g = windowGeometry(config, payload, [H, W], [outH, outW]);
    const pad = { top: Math.max(0, g.top), bottom: g.bottom, left: Math.max(0, g.left), right: g.right }; // cropping draws none
    const input = new MapView({ rows: H, cols: W, pad, size: 260, label: `input channel ${c}` });
    input.paintData(x.data, c * H * W, H * W, limitFor(store, layer, c));
    if (outSize <= MOST_WINDOWS) {
      const windows = [];
      for (let i = 0; i < outH; i++) {
        for (let j = 0; j < outW; j++) windows.push({ r: i * g.sh - g.top, c: j * g.sw - g.left, h: g.kh, w: g.kw });
      }
      input.mark('grid', windows);
    }
    const output = new MapView({ rows: outH, cols: outW, size: 200, label: `output channel ${c}: hover to move the window` });
    output.paintData(y.data, c * outSize, outSize, limitFor(store, layer + 1, c));
    output.onCell((cell) => scan.hover(cell), scan.position);
    const clamp = (v, n) => Math.max(0, Math.min(n - 1, v));
    const windowOf = ([r, q]) => [clamp(Math.floor((r + g.top) / g.sh), outH), clamp(Math.floor((q + g.left) / g.sw), outW)];
    input.onCell((cell) => scan.hover(windowOf(cell)), scan.position); // hovering the input picks its window
    maps.replaceChildren(
      h('figure', {}, input.element, h('figcaption', {}, h('b', { text: `input channel ${c}` }), ` · ${H}×${W}`)),
      numbers,
      h('figure', {}, output.element,
        h('figcaption', {}, h('b', { text: `output channel ${c}` }), ` · ${outH}×${outW} · hover to move`), scan.controls));
    return { input, output };
  }

  function renderNumbers(payload) {
    const won = (a, b) => isMax && a === payload.winner[0] && b === payload.winner[1];
    const padding = `padding: ${isMax ? '−∞, never the maximum' : '0, counted in the mean'}`;
    const table = numberTable(payload.inputs, 'input', nestedAbsMax(payload.inputs), (a, b) => {
      if (!payload.inside[a][b]) return { class: 'pad', style: null, title: padding };
      return won(a, b) ? { class: 'winner', style: null, title: 'the maximum' } : {};
    });
    if (isMax) table.querySelectorAll('td.pad').forEach((td) => { td.textContent = '−∞'; });
    numbers.replaceChildren(
      h('p', { class: 'muted fine', text: `window at output (${payload.index.slice(1).join(', ')})` }),
      table,
      h('div', { class: 'pool-result' },
        poolResult(payload, isMax), h('span', { class: 'num result', id: 'pool-value', text: fmt(payload.value) })));
    numbers.dataset.position = payload.index.join(',');
  }

  const explainText = isMax
    ? 'Each window keeps only its largest value (outlined): the strongest response survives, the map shrinks,'
      + ' and small shifts of the input change little.'
    : 'Each window is replaced by the mean of its values; zero padding counts in the mean.';
  const padding = typeof config.padding === 'string' ? `“${config.padding}”`
    : config.padding.every(Number.isInteger) ? config.padding.join('×') : JSON.stringify(config.padding);
  const element = h('div', { class: 'pool-view' },
    h('div', { class: 'params' },
      param('kernel', config.kernel_size.join('×')), param('stride', config.stride.join('×')),
      param('padding', padding,
        isMax ? 'padded with −∞: padding never wins; a negative side crops' : 'zero padding, counted in the mean; a negative side crops'),
      config.anchor && param('anchor', `(${config.anchor.join(', ')})`,
        'the window element that sits on the input pixel an output belongs to; it decides how “same” padding is split'),
      param('parameters', 'none: pooling learns nothing')),
    h('p', { class: 'muted fine', text: explainText }),
    poolFormula(isMax, config),
    maps);
  return { element, destroy: scan.destroy, ready: scan.ready };
}
