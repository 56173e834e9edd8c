// "What the last step did to one weight": pick a parameter value (layer, weight or bias,
// index) and see POST /api/training/{id}/update's numbers — the value before, its gradient
// averaged over the batch, the learning rate, the optimizer's own terms and the value after —
// with the update formula filled in and checked here in float32, in the engine's order.
import { h, math } from './backward-ui.js';

const f = Math.fround;

/** The names of a parameter's axes, by its rank (conv weight, dense weight, bias). */
const AXES = { 4: ['out channel', 'in channel', 'kernel row', 'kernel column'], 2: ['output', 'input'], 1: ['unit'] };

/** A number in full: the shortest decimal that reads back as the same float32 (else 10 digits), real minus. */
export function exact(value) {
  if (value === null || value === undefined) return '·';
  if (!Number.isFinite(value)) return String(value);
  let text = value.toPrecision(10);
  if (f(value) === value) {
    for (let digits = 1; digits <= 9; digits++) {
      text = value.toPrecision(digits);
      if (f(Number(text)) === value) break;
    }
  }
  return String(Number(text)).replace('e+', 'e').replace(/-/g, '−');
}

/** `exact(value)` as MathML (an exponent as · 10^e), negative factors in parentheses. */
function num(value, paren = false) {
  const [mantissa, exponent] = exact(value).split('e');
  const negative = mantissa.startsWith('−');
  const digits = `<mn>${negative ? mantissa.slice(1) : mantissa}</mn>`;
  const power = exponent ? `<mo>·</mo><msup><mn>10</mn><mrow>${exponent.startsWith('−') ? `<mo>−</mo><mn>${exponent.slice(1)}</mn>` : `<mn>${exponent}</mn>`}</mrow></msup>` : '';
  const body = `<mrow>${negative ? '<mo>−</mo>' : ''}${digits}${power}</mrow>`;
  return negative && paren ? `<mrow><mo>(</mo>${body}<mo>)</mo></mrow>` : body;
}

const SYMBOLS = {
  before: '<msub><mi>θ</mi><mtext>before</mtext></msub>',
  after: '<msub><mi>θ</mi><mtext>after</mtext></msub>',
  gradient: '<mi>g</mi>',
  lr: '<mi>η</mi>',
  weight_decay: '<mi>λ</mi>',
  momentum: '<mi>μ</mi>',
  velocity_before: '<msub><mi>v</mi><mtext>before</mtext></msub>',
  velocity: '<mi>v</mi>',
  t: '<mi>t</mi>',
  beta1: '<msub><mi>β</mi><mn>1</mn></msub>',
  beta2: '<msub><mi>β</mi><mn>2</mn></msub>',
  eps: '<mi>ε</mi>',
  m_before: '<msub><mi>m</mi><mtext>before</mtext></msub>',
  v_before: '<msub><mi>v</mi><mtext>before</mtext></msub>',
  m: '<mi>m</mi>',
  v: '<mi>v</mi>',
  m_hat: '<mover><mi>m</mi><mo>^</mo></mover>',
  v_hat: '<mover><mi>v</mi><mo>^</mo></mover>',
};

/**
 * The step redone here in float32, operation by operation as the engine (NumPy, float32
 * arrays and Python-float constants) does it: {after, velocity?, m?, v?}.
 */
export function redo(u) {
  const g = u.weight_decay ? f(u.gradient + f(f(u.weight_decay) * u.before)) : u.gradient;
  if (u.optimizer === 'adam') {
    const m = f(u.m_before + f(f(1 - u.beta1) * f(g - u.m_before)));
    const v = f(f(u.v_before * f(u.beta2)) + f(f(1 - u.beta2) * f(g * g)));
    const stepSize = u.lr / (1 - u.beta1 ** u.t);
    const denominator = f(f(f(Math.sqrt(v)) / f((1 - u.beta2 ** u.t) ** 0.5)) + f(u.eps));
    return { m, v, after: f(u.before - f(f(stepSize) * f(m / denominator))) };
  }
  if (u.momentum) {
    const velocity = u.velocity_before === null ? g : f(f(u.velocity_before * f(u.momentum)) + g);
    return { velocity, after: f(u.before - f(f(u.lr) * velocity)) };
  }
  return { after: f(u.before - f(f(u.lr) * g)) };
}

/** The formula lines for update `u`: symbols, then the numbers, then the result. */
function formulas(u) {
  const S = SYMBOLS;
  // the symbols on one line, the numbers and the result under them
  const line = (left, symbols, numbers, result) => math(`<mtable>`
    + `<mtr><mtd>${left}</mtd><mtd><mo>=</mo>${symbols}</mtd></mtr>`
    + `<mtr><mtd></mtd><mtd><mo>=</mo>${numbers}<mo>=</mo>${num(result)}</mtd></mtr></mtable>`, true);
  const g = u.weight_decay ? '<msup><mi>g</mi><mo>′</mo></msup>' : S.gradient;
  const gValue = u.weight_decay ? f(u.gradient + f(f(u.weight_decay) * u.before)) : u.gradient;
  const lines = [];
  if (u.weight_decay) {
    lines.push(line(g, `${S.gradient}<mo>+</mo>${S.weight_decay}<mo>·</mo>${S.before}`,
      `${num(u.gradient)}<mo>+</mo>${num(u.weight_decay)}<mo>·</mo>${num(u.before, true)}`, gValue));
  }
  if (u.optimizer === 'adam') {
    const oneMinus = (beta) => `<mo>(</mo><mn>1</mn><mo>−</mo>${beta}<mo>)</mo>`;
    lines.push(
      line(S.m, `${S.beta1}<mo>·</mo>${S.m_before}<mo>+</mo>${oneMinus(S.beta1)}<mo>·</mo>${g}`,
        `${num(u.beta1)}<mo>·</mo>${num(u.m_before, true)}<mo>+</mo>${num(1 - u.beta1)}<mo>·</mo>${num(gValue, true)}`, u.m),
      line(S.v, `${S.beta2}<mo>·</mo>${S.v_before}<mo>+</mo>${oneMinus(S.beta2)}<mo>·</mo><msup>${g}<mn>2</mn></msup>`,
        `${num(u.beta2)}<mo>·</mo>${num(u.v_before)}<mo>+</mo>${num(1 - u.beta2)}<mo>·</mo><msup>${num(gValue, true)}<mn>2</mn></msup>`, u.v),
      line(S.m_hat, `<mfrac>${S.m}<mrow><mn>1</mn><mo>−</mo><msup>${S.beta1}${S.t}</msup></mrow></mfrac>`,
        `<mfrac>${num(u.m)}<mrow><mn>1</mn><mo>−</mo><msup>${num(u.beta1)}<mn>${u.t}</mn></msup></mrow></mfrac>`, u.m_hat),
      line(S.v_hat, `<mfrac>${S.v}<mrow><mn>1</mn><mo>−</mo><msup>${S.beta2}${S.t}</msup></mrow></mfrac>`,
        `<mfrac>${num(u.v)}<mrow><mn>1</mn><mo>−</mo><msup>${num(u.beta2)}<mn>${u.t}</mn></msup></mrow></mfrac>`, u.v_hat),
      line(S.after, `${S.before}<mo>−</mo>${S.lr}<mo>·</mo><mfrac>${S.m_hat}<mrow><msqrt>${S.v_hat}</msqrt><mo>+</mo>${S.eps}</mrow></mfrac>`,
        `${num(u.before)}<mo>−</mo>${num(u.lr)}<mo>·</mo><mfrac>${num(u.m_hat)}<mrow><msqrt>${num(u.v_hat)}</msqrt><mo>+</mo>${num(u.eps)}</mrow></mfrac>`, u.after));
  } else if (u.momentum) {
    if (u.velocity_before === null) {
      lines.push(math(`${S.velocity}<mo>=</mo>${g}<mo>=</mo>${num(u.velocity)}<mspace width="1em"/><mtext>(the first step starts the velocity at the gradient)</mtext>`, true));
    } else {
      lines.push(line(S.velocity, `${S.momentum}<mo>·</mo>${S.velocity_before}<mo>+</mo>${g}`,
        `${num(u.momentum)}<mo>·</mo>${num(u.velocity_before, true)}<mo>+</mo>${num(gValue, true)}`, u.velocity));
    }
    lines.push(line(S.after, `${S.before}<mo>−</mo>${S.lr}<mo>·</mo>${S.velocity}`,
      `${num(u.before)}<mo>−</mo>${num(u.lr)}<mo>·</mo>${num(u.velocity, true)}`, u.after));
  } else {
    lines.push(line(S.after, `${S.before}<mo>−</mo>${S.lr}<mo>·</mo>${g}`,
      `${num(u.before)}<mo>−</mo>${num(u.lr)}<mo>·</mo>${num(gValue, true)}`, u.after));
  }
  return lines;
}

/** The terms of update `u` as a table: name, symbol, value (exact, in data-value). */
function terms(u, batch) {
  const rows = [
    ['before', 'value before the step'],
    ['gradient', `gradient ∂L/∂θ, averaged over the batch${batch ? ` of ${batch}` : ''}`],
    ['lr', 'learning rate'],
    u.weight_decay ? ['weight_decay', 'weight decay'] : null,
    ...(u.optimizer === 'adam' ? [
      ['t', 'step count'], ['beta1', 'decay of m'], ['beta2', 'decay of v'], ['eps', 'ε (keeps the division finite)'],
      ['m_before', 'm before (moving average of g)'], ['m', 'm after'],
      ['v_before', 'v before (moving average of g²)'], ['v', 'v after'],
      ['m_hat', 'm̂: m corrected for its start at 0'], ['v_hat', 'v̂: v corrected likewise'],
    ] : u.momentum ? [
      ['momentum', 'momentum'], ['velocity_before', 'velocity before'], ['velocity', 'velocity after'],
    ] : []),
    ['after', 'value after the step'],
  ].filter(Boolean);
  return h('table', { class: 'tr-terms' }, h('tbody', {}, rows.map(([name, text]) => {
    const value = u[name];
    return h('tr', { class: name === 'after' || name === 'before' ? 'tr-main' : null },
      h('th', { scope: 'row' }, text),
      h('td', { class: 'tr-symbol' }, math(SYMBOLS[name])),
      h('td', { 'data-role': name.replace(/_/g, '-'), 'data-value': value === null ? null : String(value) },
        value === null ? 'none yet (first step)' : exact(value)));
  })));
}

/** The check: the step redone here in float32 against the engine's value after. */
function check(u) {
  const mine = redo(u);
  const same = mine.after === u.after;
  const formula = u.optimizer === 'adam' ? 'before − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)'
    : u.momentum ? 'before − lr · velocity' : 'before − lr · gradient';
  return h('p', { class: `tr-check ${same ? 'tr-same' : 'tr-differs'}` },
    `Check, redone here in float32 in the engine's order: ${formula} = `,
    h('strong', { 'data-role': 'check', 'data-value': String(mine.after) }, exact(mine.after)),
    same ? ' — exactly the engine’s value after. ✓'
      : ` — the engine’s value after is ${exact(u.after)} (a difference of ${exact(u.after - mine.after)}).`);
}

/**
 * The view: a picker for the value and the last step's numbers for it. `onChoose(value)`
 * hears every choice ({layer, parameter, index}); `onchange(fn)` registers who fetches.
 */
export function updateView(model, onChoose) {
  const layers = model.layers.filter((layer) => Object.keys(layer.weights || {}).length);
  const layerSelect = h('select', { id: 'tr-layer' },
    layers.map((layer) => h('option', { value: layer.index }, `layer ${layer.index} · ${layer.label}`)));
  const parameterSelect = h('select', { id: 'tr-parameter' });
  const indexInputs = h('span', { class: 'tr-index', role: 'group', 'aria-label': 'index into the parameter' });
  const result = h('div', { class: 'tr-update', id: 'tr-update' });
  let listener = () => {};
  let value = null;

  const shapeOf = (layer, parameter) => model.layers[layer].weights[parameter].shape;
  const read = () => ({
    layer: Number(layerSelect.value),
    parameter: parameterSelect.value,
    index: [...indexInputs.querySelectorAll('input')].map((input) => Number(input.value)),
  });

  /** Rebuild the parameter choices and index inputs for `chosen`, then select it. */
  function set(chosen) {
    layerSelect.value = String(chosen.layer);
    const weights = model.layers[chosen.layer].weights;
    parameterSelect.replaceChildren(...Object.keys(weights).map((name) => h('option', { value: name }, name)));
    parameterSelect.value = chosen.parameter;
    const shape = shapeOf(chosen.layer, chosen.parameter);
    const names = AXES[shape.length] || shape.map((_, k) => `axis ${k}`);
    indexInputs.replaceChildren(...shape.map((size, axis) => h('label', { class: 'tr-index-axis' },
      h('span', { class: 'muted small' }, `${names[axis]} (0–${size - 1})`),
      h('input', {
        type: 'number', id: `tr-index-${axis}`, min: 0, max: size - 1, step: 1, value: chosen.index[axis] ?? 0,
        onchange: (event) => {
          event.target.value = String(Math.max(0, Math.min(size - 1, Math.round(Number(event.target.value) || 0))));
          choose(read(), true);
        },
      }))));
    value = read();
    onChoose(value);
  }

  function choose(chosen, fromPicker = false) {
    const shape = shapeOf(chosen.layer, chosen.parameter);
    set({ ...chosen, index: shape.map((size, axis) => Math.max(0, Math.min(size - 1, chosen.index[axis] ?? 0))) });
    result.dataset.pending = 'true';
    if (fromPicker) listener();
  }

  layerSelect.addEventListener('change', () => {
    const layer = Number(layerSelect.value);
    choose({ layer, parameter: Object.keys(model.layers[layer].weights)[0], index: [] }, true);
  });
  parameterSelect.addEventListener('change', () => choose({ ...read(), index: [] }, true));

  const placeholder = (text) => result.replaceChildren(h('p', { class: 'muted' }, text));
  const element = h('div', {},
    h('p', { class: 'muted small' }, 'Pick a weight or bias — or click a value in the kernels — to see, after each step, ',
      'how the optimizer moved it: the numbers, the formula with them filled in, and the check.'),
    h('div', { class: 'tr-picker' },
      h('label', { class: 'tr-field', for: 'tr-layer' }, h('span', {}, 'layer'), layerSelect),
      h('label', { class: 'tr-field', for: 'tr-parameter' }, h('span', {}, 'parameter'), parameterSelect),
      indexInputs),
    result);
  if (layers.length) set({ layer: layers[0].index, parameter: Object.keys(layers[0].weights)[0], index: [] });

  return {
    element,
    chosen: () => value,
    choose,
    onchange: (fn) => {
      listener = fn;
    },
    reset: () => placeholder('Start training or take one step to see how it changes this value.'),
    failed: (message) => placeholder(`The last step could not be explained: ${message}`),
    /** Show POST …/update's answer (null: no step yet). */
    show(u, batch) {
      if (!u) return placeholder('Take a step to see how it changes this value.');
      const where = `${u.parameter}[${u.index.join(', ')}]`;
      const name = u.optimizer === 'adam' ? 'Adam' : u.momentum ? `SGD with momentum ${u.momentum}` : 'SGD';
      Object.assign(result.dataset, { layer: u.layer, parameter: u.parameter, index: JSON.stringify(u.index), step: u.step, pending: 'false' });
      result.replaceChildren(
        h('p', {}, h('strong', {}, `layer ${u.layer} · ${where}`), ` · step ${u.step} · ${name}`),
        terms(u, batch),
        h('div', { class: 'tr-formulas' }, formulas(u)),
        check(u));
    },
  };
}
