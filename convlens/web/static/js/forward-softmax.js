// Softmax: scores → exponentials (after subtracting the largest score) → their sum →
// probabilities, with the numbers, and why plain normalisation x / Σx would not do.
import { fmt } from './colors.js';
import { activations, fill, h, mathml, mn } from './forward-maps.js';
import { explainCached } from './forward-scan.js';

const MOST_ROWS = 20; // more classes: the likeliest ones are listed

/** A bar for a share in [−1, 1]: right of the axis when positive, left when negative. */
function bar(share) {
  const width = Math.min(100, Math.abs(share) * 100);
  return h('span', { class: `share ${share < 0 ? 'negative' : ''}` },
    h('span', { style: `width: ${width / 2}%; ${share < 0 ? `right: 50%` : 'left: 50%'}` }));
}

/** The table and formulas for `data` = {inputs, max, exps, sum, probabilities}, class `k` chosen. */
function render(data, k, names, choose, predicted) {
  const { inputs, max, exps, sum, probabilities } = data;
  const plainSum = inputs.reduce((a, b) => a + b, 0);
  const order = inputs.map((_, j) => j);
  const rows = inputs.length > MOST_ROWS
    ? order.sort((a, b) => probabilities[b] - probabilities[a]).slice(0, MOST_ROWS).sort((a, b) => a - b) : order;
  if (!rows.includes(k)) rows.push(k);
  const table = h('table', { class: 'numbers softmax-table' },
    h('thead', {}, h('tr', {},
      ['class', 'score x', 'x − m', 'e^(x − m)', 'p = e / Σ', null, 'x / Σx', null].map((t) => (t === null
      ? h('th', {}, h('span', { class: 'visually-hidden', text: 'bar' })) : h('th', { text: t }))))),
    h('tbody', {}, rows.map((j) => h('tr', {
      class: [j === k && 'chosen', j === predicted && 'predicted'].filter(Boolean).join(' ') || undefined,
      'data-class': j, tabindex: 0, title: `explain ${names[j]}`, // Enter or a click explains the row's class
      onclick: () => choose(j), onkeydown: (event) => event.key === 'Enter' && choose(j),
    },
    h('td', { class: 'name', text: names[j] }),
    h('td', { 'data-role': 'score', text: fmt(inputs[j]) }),
    h('td', { text: fmt(inputs[j] - max) }),
    h('td', { 'data-role': 'exp', text: fmt(exps[j]) }),
    h('td', { 'data-role': 'probability', text: fmt(probabilities[j]) }),
    h('td', { class: 'bar-cell' }, bar(probabilities[j])),
    h('td', { 'data-role': 'plain', text: fmt(inputs[j] / plainSum) }),
    h('td', { class: 'bar-cell' }, bar(inputs[j] / plainSum))))),
    h('tfoot', {}, h('tr', {}, h('td', { text: 'Σ' }), h('td', { text: fmt(plainSum) }), h('td'),
      h('td', { id: 'softmax-sum', text: fmt(sum) }), h('td', { text: fmt(probabilities.reduce((a, b) => a + b, 0)) }),
      h('td'), h('td', { text: '1' }), h('td'))));
  const sub = (name, index) => `<msub><mi>${name}</mi><mi>${index}</mi></msub>`;
  const power = (exponent) => `<msup><mi>e</mi><mrow>${exponent}</mrow></msup>`;
  return [
    mathml(`<mrow>${sub('p', 'k')}<mo>=</mo><mfrac>${power(`${sub('x', 'k')}<mo>−</mo><mi>m</mi>`)}
      <mrow><munder><mo>∑</mo><mi>j</mi></munder>${power(`${sub('x', 'j')}<mo>−</mo><mi>m</mi>`)}</mrow></mfrac>
      <mo>,</mo><mspace width="1em"/>
      <mi>m</mi><mo>=</mo><munder><mi>max</mi><mi>j</mi></munder><mspace width="0.2em"/>${sub('x', 'j')}<mo>=</mo>${mn(max)}</mrow>`),
    h('div', { class: 'softmax-result' },
      mathml(`<mrow><msub><mi>p</mi><mn>${k}</mn></msub><mo>=</mo>
        <mfrac>${power(`${mn(inputs[k])}<mo>−</mo>${mn(max)}`)}${mn(sum)}</mfrac>
        <mo>=</mo><mfrac>${mn(exps[k])}${mn(sum)}</mfrac><mo>=</mo></mrow>`, 'inline'),
      h('span', { class: 'num result', id: 'softmax-value', text: fmt(probabilities[k]) }),
      h('span', { class: 'muted', text: ` the probability of “${names[k]}”` })),
    table,
    h('div', { class: 'note' },
      h('h4', { text: 'Why not just x / Σx?' }),
      h('p', {
        text: 'Scores can be negative, and their sum can be small or zero: dividing by it gives negative'
          + ' “probabilities” or huge ones (right-hand columns). The exponential makes every score positive and keeps'
          + ' their order; a score larger by 1 becomes e ≈ 2.7 times more likely, so the winner stands out.'
          + ' Subtracting the largest score m first changes no probability (it cancels in the fraction) but keeps'
          + ' e^x from overflowing.',
      })),
  ];
}

export function softmaxView({ store, model, trace, scores, layer, channel: k }) {
  const last = scores || layer === model.layers.length - 1;
  const inputs = Array.from(activations(trace)[layer].data);
  const names = last ? model.classes : inputs.map((_, j) => String(j));
  const choose = (j) => store.set({ selected: { layer, channel: j } });
  const predicted = last ? trace.prediction : null;
  const element = h('div', { class: 'softmax-view' }, h('p', { class: 'muted', text: 'Loading…' }));
  const show = (data) => fill(element,
    scores ? h('p', {
      class: 'muted fine',
      text: 'This model ends with raw scores (logits); the page turns them into probabilities with a softmax,'
        + ' as the loss does in training.',
    }) : null,
    ...render(data, k, names, choose, predicted));
  if (scores) {
    const max = Math.max(...inputs);
    const exps = inputs.map((x) => Math.exp(x - max));
    show({ inputs, max, exps, sum: exps.reduce((a, b) => a + b, 0), probabilities: trace.probabilities });
    return { element };
  }
  const ready = explainCached(store, layer, [k])
    .then((payload) => show({ ...payload, probabilities: payload.exps.map((e) => e / payload.sum) }))
    .catch((error) => element.replaceChildren(h('p', { class: 'muted', text: `could not explain the softmax: ${error.message}` })));
  return { element, ready };
}
