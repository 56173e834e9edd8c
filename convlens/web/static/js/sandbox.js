// The hyperparameter sandbox: choose the input size, kernel, stride, padding, dilation,
// anchor and mode; the engine runs that convolution (POST /api/sandbox) and the page shows
// the padded input, the kernel (and the one actually applied), the output, the resolved
// padding and the output-size formula, with the kernel sliding over the input. With a δ
// (1 at one output cell, or 1 everywhere) the engine runs the backward pass too, and the page
// shows dL/dx as the full convolution of δ with the rotated kernel and dL/dW as the padded
// input correlated with δ, every number from the engine.
import { api } from './api.js';
import { css, diverging, fmt } from './colors.js';
import { h, math, mn, numberGrid, svg } from './backward-ui.js';
import { byId } from './dom.js';

const NUMBERS = [
  // id, label, min, max, default (null: empty, meaning "the default")
  ['sb-input-h', 'H (rows)', 1, 32, 7], ['sb-input-w', 'W (columns)', 1, 32, 7],
  ['sb-kernel-h', 'kh (rows)', 1, 9, 3], ['sb-kernel-w', 'kw (columns)', 1, 9, 3],
  ['sb-stride', 'stride s', 1, 5, 1], ['sb-dilation', 'dilation d', 1, 4, 1],
  ['sb-anchor-y', 'ay (row)', 0, 8, null], ['sb-anchor-x', 'ax (column)', 0, 8, null],
];
const STEP_MS = 700;

export function mount(element, store) {
  const field = ([id, label, min, max, value]) => h('label', { class: 'sb-field', for: id }, label,
    h('input', { id, type: 'number', min, max, step: 1, value: value ?? '', placeholder: value === null ? 'centre' : null, inputmode: 'numeric' }));
  const [inH, inW, kH, kW, stride, dilation, ay, ax] = NUMBERS.map(field);
  const padding = h('select', { id: 'sb-padding' },
    h('option', { value: 'valid' }, 'valid (none)'), h('option', { value: 'same', selected: true }, 'same'),
    h('option', { value: 'full' }, 'full'),
    h('optgroup', { label: 'explicit, every side' }, [1, 2, 3, 4, 5, 6].map((p) => h('option', { value: p }, `${p} pixel${p > 1 ? 's' : ''}`))));
  const mode = h('select', { id: 'sb-mode' },
    h('option', { value: 'correlation' }, 'correlation'),
    h('option', { value: 'convolution' }, 'convolution'));
  const anchorNote = h('p', { class: 'sb-hint', id: 'sb-anchor-note' });
  const delta = h('select', { id: 'sb-delta' },
    h('option', { value: 'cell', selected: true }, '1 at one output cell'),
    h('option', { value: 'ones' }, '1 everywhere'),
    h('option', { value: 'off' }, 'off (forward only)'));
  const [deltaI, deltaJ] = [['sb-delta-i', 'i (row)'], ['sb-delta-j', 'j (column)']].map(([id, label]) => h('label', { class: 'sb-field', for: id }, label,
    h('input', { id, type: 'number', min: 0, max: 31, step: 1, value: 0, inputmode: 'numeric' })));
  const form = h('form', { class: 'sb-controls', 'aria-label': 'convolution settings', onsubmit: (e) => e.preventDefault() },
    h('fieldset', {}, h('legend', {}, 'Input'), inH, inW),
    h('fieldset', {}, h('legend', {}, 'Kernel'), kH, kW),
    h('fieldset', {}, h('legend', {}, 'Sliding'), stride, dilation),
    h('fieldset', {}, h('legend', {}, 'Padding'), h('label', { class: 'sb-field wide', for: 'sb-padding' }, 'padding', padding)),
    h('fieldset', {}, h('legend', {}, 'Anchor (ay, ax)'), ay, ax, anchorNote),
    h('fieldset', {}, h('legend', {}, 'Mode'), h('label', { class: 'sb-field wide', for: 'sb-mode' }, 'mode', mode),
      h('p', { class: 'sb-hint' }, 'Correlation is what frameworks call convolution; true convolution turns the kernel by 180° first.')),
    h('fieldset', {}, h('legend', {}, 'Backward: δ = dL/dy'), h('label', { class: 'sb-field wide', for: 'sb-delta' }, 'δ', delta), deltaI, deltaJ,
      h('p', { class: 'sb-hint' }, 'The gradient that arrives at the output. Click a cell of δ below to move the 1.')));

  const message = h('p', { id: 'sandbox-message', role: 'status', 'aria-live': 'polite', hidden: true });
  const stage = h('div', { class: 'sb-stage' });
  element.replaceChildren(
    h('h2', {}, 'Hyperparameter sandbox'),
    h('p', { class: 'sb-intro' }, 'Change the settings: the engine runs a real Conv2D on a small numbered input ',
      'with a numbered kernel, and the page shows every number. Padding cells are grey zeros.'),
    h('div', { class: 'sb-layout' }, form, h('div', { class: 'sb-main' }, message, stage)));

  const value = (id) => byId(id).value.trim();
  let seq = 0;
  let timer = null;
  let players = []; // the current picture's animations (forward, dL/dx, dL/dW)
  /** Put δ's 1 on output cell (i, j) and run again. */
  const pickDelta = (i, j) => {
    Object.assign(byId('sb-delta'), { value: 'cell' });
    byId('sb-delta-i').value = i;
    byId('sb-delta-j').value = j;
    schedule();
  };

  /** The request body from the controls, or {error} for a field that is not a whole number. */
  function settings() {
    const numbers = {};
    for (const [id, label, , , initial] of NUMBERS) {
      const text = value(id);
      if (text === '' && initial === null) continue;
      if (!/^-?\d+$/.test(text)) return { error: `${label} must be a whole number (it is "${text}").` };
      numbers[id] = Number(text);
    }
    const [kh, kw] = [numbers['sb-kernel-h'], numbers['sb-kernel-w']];
    const hasAnchor = 'sb-anchor-y' in numbers || 'sb-anchor-x' in numbers;
    const pad = value('sb-padding');
    let delta = null;
    if (value('sb-delta') === 'ones') delta = 'ones';
    if (value('sb-delta') === 'cell') {
      const cell = ['sb-delta-i', 'sb-delta-j'].map(value);
      const bad = cell.find((text) => !/^\d+$/.test(text));
      if (bad !== undefined) return { error: `δ's output cell must be whole numbers (it is "${bad}").` };
      delta = cell.map(Number);
    }
    return {
      body: {
        input_size: [numbers['sb-input-h'], numbers['sb-input-w']],
        kernel_size: [kh, kw],
        stride: [numbers['sb-stride'], numbers['sb-stride']],
        dilation: [numbers['sb-dilation'], numbers['sb-dilation']],
        padding: /^\d+$/.test(pad) ? Number(pad) : pad,
        anchor: hasAnchor ? [numbers['sb-anchor-y'] ?? Math.floor((kh - 1) / 2), numbers['sb-anchor-x'] ?? Math.floor((kw - 1) / 2)] : null,
        mode: value('sb-mode'),
        delta,
      },
    };
  }

  function schedule() {
    const mine = ++seq;
    element.dataset.status = 'pending';
    clearTimeout(timer);
    timer = setTimeout(() => run(mine), 120);
  }

  async function run(mine) {
    const { body, error } = settings();
    anchorNote.textContent = body && body.padding === 'same'
      ? 'With "same" padding the anchor decides how the padding is split: it is the kernel element that sits on the input pixel each output belongs to.'
      : 'The anchor only matters for "same" padding; with this padding it changes no value.';
    if (error) return invalid(error);
    try {
      const result = await sandboxMovingDelta(body);
      if (mine !== seq) return;
      message.hidden = true;
      stage.classList.remove('stale');
      element.dataset.status = 'ready';
      const playing = new Set(players.filter((p) => p.playing).map((p) => p.name));
      players.forEach((p) => p.stop());
      players = draw(stage, body, result, pickDelta);
      players.filter((p) => playing.has(p.name)).forEach((p) => p.play());
    } catch (failure) {
      if (mine === seq) invalid(failure.message);
    }
  }

  /**
   * The engine's answer; when δ's cell lies outside a smaller output of new settings, δ moves
   * to (0, 0) instead (the engine refuses a cell outside the output, with a sentence).
   */
  async function sandboxMovingDelta(body) {
    try {
      return await api.sandbox(body);
    } catch (failure) {
      if (!Array.isArray(body.delta) || (body.delta[0] === 0 && body.delta[1] === 0)) throw failure;
      let result;
      try {
        result = await api.sandbox({ ...body, delta: [0, 0] });
      } catch {
        throw failure; // the settings themselves do not work: say why
      }
      body.delta = [0, 0];
      byId('sb-delta-i').value = 0;
      byId('sb-delta-j').value = 0;
      return result;
    }
  }

  /** Say why in the sandbox itself; the last valid picture stays, dimmed. */
  function invalid(text) {
    message.hidden = false;
    message.replaceChildren(h('strong', {}, 'These settings do not work: '), text);
    stage.classList.add('stale');
    players.forEach((p) => p.pause());
    element.dataset.status = 'invalid';
  }

  form.addEventListener('input', schedule);
  form.addEventListener('change', schedule);
  schedule();
}

/** The padded input, the kernel(s), the output and the formulas for one engine result. */
function draw(stage, body, r, pickDelta) {
  const [[top, bottom], [left, right]] = r.padding;
  const [H, W] = body.input_size;
  const [kh, kw] = body.kernel_size;
  const [s] = body.stride;
  const [d] = body.dilation;
  const [Ho, Wo] = r.output_size;
  const convolution = body.mode === 'convolution';
  // the applied kernel's element that sits on the output's own pixel (the stored kernel's anchor)
  const anchor = convolution ? [kh - 1 - r.anchor[0], kw - 1 - r.anchor[1]] : r.anchor;
  const padded = (i, j) => {
    const inside = i >= top && i < top + H && j >= left && j < left + W;
    return { inside, value: inside ? r.input[i - top][j - left] : 0 };
  };
  const Hp = H + top + bottom;
  const Wp = W + left + right;

  const inputGrid = cellGrid(Hp, Wp, 360, (i, j) => {
    const { inside, value } = padded(i, j);
    return { text: inside ? fmt(value) : '0', value: inside ? value : undefined, class: inside ? 'in-cell' : 'pad-cell', role: inside ? null : 'pad-cell' };
  });
  const outputGrid = cellGrid(Ho, Wo, 300, (i, j) => ({ text: fmt(r.output[i][j]), value: r.output[i][j], class: 'out-cell' }));
  const kernels = h('div', { class: 'sb-kernels' },
    kernelFigure(convolution ? 'stored kernel W' : 'kernel W', r.kernel, convolution ? false : null, convolution ? r.anchor : anchor),
    convolution ? h('span', { class: 'turn' }, '↓ turned 180°') : null,
    convolution ? kernelFigure('applied: W turned 180°', r.effective_kernel, true, anchor) : null);
  const line = h('p', { class: 'sb-sum', 'aria-live': 'off' });

  /** Show output (i, j): the kernel's taps on the padded input, the products, the value. */
  function show(i, j) {
    inputGrid.marks.replaceChildren();
    const size = inputGrid.size;
    inputGrid.marks.append(svg('rect', {
      class: 'span', x: j * s * size, y: i * s * size, width: ((kw - 1) * d + 1) * size, height: ((kh - 1) * d + 1) * size,
    }));
    const terms = [];
    for (let a = 0; a < kh; a++) {
      for (let b = 0; b < kw; b++) {
        const [y, x] = [i * s + a * d, j * s + b * d];
        const isAnchor = a === anchor[0] && b === anchor[1];
        inputGrid.marks.append(svg('rect', { class: isAnchor ? 'tap anchor' : 'tap', x: x * size + 2, y: y * size + 2, width: size - 4, height: size - 4 }));
        terms.push(`${paren(r.effective_kernel[a][b])}·${paren(padded(y, x).value)}`);
      }
    }
    outputGrid.marks.replaceChildren(svg('rect', { class: 'current', x: j * outputGrid.size + 1, y: i * outputGrid.size + 1, width: outputGrid.size - 2, height: outputGrid.size - 2 }));
    line.replaceChildren(h('strong', {}, `y[${i}, ${j}] = `), `${terms.join(' + ')} = `, h('strong', {}, fmt(r.output[i][j])));
  }
  const player = makePlayer('forward', Ho, Wo, show, 'output position');
  player.follow(outputGrid);
  const backward = r.backward ? drawBackward(body, r, pickDelta) : null;

  stage.replaceChildren(
    h('div', { class: 'sb-facts' },
      h('div', { class: 'sb-size' }, h('span', { class: 'sb-size-label' }, 'output size'),
        h('span', { id: 'sandbox-output-size' }, `${Ho} × ${Wo}`), h('span', { class: 'sb-stale-note' }, '(last valid settings)')),
      h('div', { class: 'sb-formulas' },
        sizeFormula('H′', H, top, bottom, d, kh, s, Ho), sizeFormula('W′', W, left, right, d, kw, s, Wo))),
    h('p', { class: 'sb-padding-text' }, h('strong', {}, 'padding (top, bottom, left, right) = '),
      h('span', { id: 'sandbox-padding' }, `(${top}, ${bottom}, ${left}, ${right})`), ' — ', paddingReason(body, r)),
    h('div', { class: 'sb-picture' },
      h('figure', {}, inputGrid.element, h('figcaption', {}, `input ${H}×${W}, padded to ${Hp}×${Wp}`)),
      h('span', { class: 'op' }, convolution ? '∗' : '⋆'),
      kernels,
      h('span', { class: 'op' }, '='),
      h('figure', {}, outputGrid.element, h('figcaption', {}, `output ${Ho}×${Wo} (hover a cell)`))),
    player.controls(h('span', { class: 'keys small' }, h('span', { class: 'key key-tap' }), 'kernel taps', h('span', { class: 'key key-anchor' }), 'anchor', h('span', { class: 'key key-pad' }), 'padding (0)')),
    line,
    backward?.element);
  return [player, ...(backward ? backward.players : [])];
}

/**
 * Play / pause / step over the positions of a rows × cols grid; `show(i, j)` draws one.
 * Every sliding picture of the sandbox uses one. `follow(grid)`: hovering a cell of that
 * cellGrid moves there (and stops playing).
 */
function makePlayer(name, rows, cols, show, what) {
  const count = rows * cols;
  let at = 0;
  const button = h('button', { type: 'button', class: 'sb-play', 'data-player': name, 'aria-pressed': 'false' }, '▶ play');
  const player = {
    name,
    playing: false,
    timer: null,
    go(k) {
      at = ((k % count) + count) % count;
      show(Math.floor(at / cols), at % cols);
    },
    step(by) { player.go(at + by); },
    toggle() { return player.playing ? player.pause() : player.play(); },
    play() {
      player.playing = true;
      button.textContent = '❚❚ pause';
      button.setAttribute('aria-pressed', 'true');
      clearInterval(player.timer);
      player.timer = setInterval(() => player.step(1), STEP_MS);
    },
    pause() {
      player.playing = false;
      button.textContent = '▶ play';
      button.setAttribute('aria-pressed', 'false');
      clearInterval(player.timer);
    },
    stop() { clearInterval(player.timer); },
    /** Hovering a cell of `grid` (whose cells map to positions by `toPosition`) moves there. */
    follow(grid, toPosition = (i, j) => [i, j]) {
      grid.element.addEventListener('mousemove', (event) => {
        const cell = event.target.closest('[data-i]');
        const position = cell && toPosition(Number(cell.dataset.i), Number(cell.dataset.j));
        if (!position || position[0] < 0 || position[1] < 0 || position[0] >= rows || position[1] >= cols) return;
        if (player.playing) player.pause();
        player.go(position[0] * cols + position[1]);
      });
    },
    controls: (...extra) => h('div', { class: 'sb-player', 'data-player': name },
      button,
      h('button', { type: 'button', class: 'sb-step-back', 'aria-label': `◀ step: previous ${what}`, onclick: () => { player.pause(); player.step(-1); } }, '◀ step'),
      h('button', { type: 'button', class: 'sb-step', 'aria-label': `step ▶: next ${what}`, onclick: () => { player.pause(); player.step(1); } }, 'step ▶'),
      extra),
  };
  button.addEventListener('click', () => player.toggle());
  player.go(0);
  return player;
}

const paren = (v) => (v < 0 ? `(${fmt(v)})` : fmt(v));

/**
 * An SVG grid of rows × cols numbered cells, sized to fit `room` pixels, with a layer for
 * marks. `cell(i, j)` gives {text, class, role, value, title}; `value` goes to data-value,
 * `grid` names the whole grid (data-grid).
 */
function cellGrid(rows, cols, room, cell, { label = `${rows} by ${cols} grid`, grid } = {}) {
  const size = Math.max(10, Math.min(34, Math.floor(room / Math.max(rows, cols))));
  const element = svg('svg', { class: `sb-grid${size < 16 ? ' small' : ''}`, width: cols * size, height: rows * size, role: 'img', 'aria-label': label, 'data-grid': grid });
  const cells = [];
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) cells.push(cell(i, j));
  // cells too small for their numbers show them as colours (the number on hover)
  const coloured = (c) => size < 16 && typeof c.value === 'number' && !/pad|stride|unreached/.test(c.class || '');
  const limit = Math.max(1e-12, ...cells.filter(coloured).map((c) => Math.abs(c.value)));
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const c = cells[i * cols + j];
      const g = svg('g', { class: c.class, 'data-i': i, 'data-j': j, 'data-role': c.role, 'data-value': c.value === undefined ? null : String(c.value) });
      g.append(svg('rect', {
        x: j * size, y: i * size, width: size, height: size, style: coloured(c) ? `fill: ${css(diverging(c.value, limit))}` : null,
      }));
      if (size >= 16) g.append(svg('text', { x: (j + 0.5) * size, y: (i + 0.5) * size, 'font-size': Math.min(13, size * 0.42) }, c.text));
      if (c.title || size < 16) g.append(svg('title', {}, c.title || c.text));
      element.append(g);
    }
  }
  const marks = svg('g', { class: 'sb-marks' });
  element.append(marks);
  return { element, marks, size };
}

/** A kernel grid with its anchor framed; `rotated` null: no corner markers, else false/true. */
function kernelFigure(caption, kernel, rotated, anchor) {
  const grid = numberGrid(kernel, {
    limit: 1.5, corners: rotated !== null, rotated, label: caption,
    cell: (a, b) => (a === anchor[0] && b === anchor[1] ? { class: 'anchor-cell' } : null),
  });
  return h('figure', { class: 'sb-kernel' }, grid, h('figcaption', {}, caption));
}

/** ⌊(H + top + bottom − d·(k − 1) − 1) / s⌋ + 1, then the same with the numbers. */
function sizeFormula(name, size, before, after, d, k, s, result) {
  const floor = (top, bottom) => `<mrow><mo>⌊</mo><mfrac><mrow>${top}</mrow><mrow>${bottom}</mrow></mfrac><mo>⌋</mo><mo>+</mo><mn>1</mn></mrow>`;
  const symbolic = '<mi>H</mi><mo>+</mo><mtext>top</mtext><mo>+</mo><mtext>bottom</mtext><mo>−</mo><mi>d</mi><mo>·</mo><mo>(</mo><mi>k</mi><mo>−</mo><mn>1</mn><mo>)</mo><mo>−</mo><mn>1</mn>';
  const numbers = `${mn(size)}<mo>+</mo>${mn(before)}<mo>+</mo>${mn(after)}<mo>−</mo>${mn(d)}<mo>·</mo><mo>(</mo>${mn(k)}<mo>−</mo><mn>1</mn><mo>)</mo><mo>−</mo><mn>1</mn>`;
  const symbols = name === 'H′' ? symbolic : symbolic.replace('<mi>H</mi>', '<mi>W</mi>').replace('top', 'left').replace('bottom', 'right');
  return math(`<mi>${name}</mi><mo>=</mo>${floor(symbols, '<mi>s</mi>')}<mo>=</mo>${floor(numbers, mn(s))}<mo>=</mo>${floor(mn(size + before + after - d * (k - 1) - 1), mn(s))}<mo>=</mo><mn>${result}</mn>`, true);
}

/** Why the padding came out as it did. */
function paddingReason(body, r) {
  const [kh, kw] = body.kernel_size;
  const [d] = body.dilation;
  const [ay, ax] = r.anchor;
  if (body.padding === 'valid') return 'valid: no padding.';
  if (body.padding === 'full') return `full: d·(k − 1) on every side = ${d}·${kh - 1} rows, ${d}·${kw - 1} columns.`;
  if (body.padding === 'same') {
    return body.mode === 'convolution'
      ? `same, split by the anchor (${ay}, ${ax}) mirrored for the turned kernel: top = (kh − 1 − ay)·d = ${(kh - 1 - ay) * d}, bottom = ay·d = ${ay * d}; left = ${(kw - 1 - ax) * d}, right = ${ax * d}. Output (i, j) sits on input (i·s, j·s).`
      : `same, split by the anchor (${ay}, ${ax}): top = ay·d = ${ay * d}, bottom = (kh − 1 − ay)·d = ${(kh - 1 - ay) * d}; left = ${ax * d}, right = ${(kw - 1 - ax) * d}. Output (i, j) sits on input (i·s, j·s).`;
  }
  return `explicit: ${body.padding} on every side.`;
}

/**
 * The backward pass of the sandbox's convolution for the engine's δ: dL/dx as the full
 * convolution of δ with the rotated kernel (spread δ by the stride, pad it fully, slide the
 * rotated kernel, crop the forward padding), and dL/dW as the padded input correlated with δ.
 * Every number is the engine's; the page only places them. Returns {element, players}.
 */
function drawBackward(body, r, pickDelta) {
  const b = r.backward;
  const [[top, bottom], [left, right]] = r.padding;
  const [H, W] = body.input_size;
  const [kh, kw] = body.kernel_size;
  const [s] = body.stride;
  const [d] = body.dilation;
  const [Ho, Wo] = r.output_size;
  const [eh, ew] = b.full_padding;
  const [Rh, Rw] = b.reach; // rows and columns of the padded input that some window reads
  const Hp = H + top + bottom;
  const Wp = W + left + right;
  const convolution = body.mode === 'convolution';
  const one = Array.isArray(body.delta) ? body.delta : null;
  const number = (value, extra = {}) => ({ text: fmt(value), value, ...extra });

  // -- dL/dx ---------------------------------------------------------------------------------
  const deltaGrid = cellGrid(Ho, Wo, 170, (i, j) => number(b.delta[i][j], {
    class: b.delta[i][j] ? 'delta-cell hot' : 'delta-cell', role: 'sb-delta-cell', title: `δ[${i}, ${j}] = ${fmt(b.delta[i][j])}: click to put the 1 here`,
  }), { label: 'delta, click a cell to move the 1', grid: 'sb-delta' });
  deltaGrid.element.addEventListener('click', (event) => {
    const cell = event.target.closest('[data-i]');
    if (cell) pickDelta(Number(cell.dataset.i), Number(cell.dataset.j));
  });
  const [Gh, Gw] = [b.spread_delta.length, b.spread_delta[0].length];
  const spreadGrid = s > 1 ? cellGrid(Gh, Gw, 190, (i, j) => number(b.spread_delta[i][j], {
    class: i % s || j % s ? 'stride-cell' : 'delta-cell',
  }), { label: 'delta spread by the stride', grid: 'sb-spread' }) : null;
  const [Fh, Fw] = [b.full_delta.length, b.full_delta[0].length];
  const fullGrid = cellGrid(Fh, Fw, 260, (i, j) => {
    const [gi, gj] = [i - eh, j - ew];
    const inside = gi >= 0 && gj >= 0 && gi < Gh && gj < Gw;
    const kind = !inside ? 'pad-cell' : gi % s || gj % s ? 'stride-cell' : 'delta-cell';
    return number(b.full_delta[i][j], { class: kind, role: 'sb-full-delta' });
  }, { label: 'delta spread and padded fully', grid: 'sb-full' });
  const rotatedGrid = numberGrid(b.rotated_kernel, { limit: 1.5, corners: true, rotated: true, role: 'sb-rotated', label: 'rotated kernel' });
  const paddedGrid = cellGrid(Hp, Wp, 260, (i, j) => {
    const reached = i < Rh && j < Rw;
    const inside = i >= top && i < top + H && j >= left && j < left + W;
    return number(b.padded_input_grad[i][j], {
      class: `${inside ? 'in-cell' : 'pad-cell'}${reached ? '' : ' unreached'}`, role: 'sb-dxp',
      title: `dL/dx̃[${i}, ${j}] = ${fmt(b.padded_input_grad[i][j])}${inside ? '' : ' (padding: cropped away)'}${reached ? '' : ' (no window reached it: 0)'}`,
    });
  }, { label: 'gradient of the padded input', grid: 'sb-dxp' });
  paddedGrid.marks.append(svg('rect', { class: 'crop', x: left * paddedGrid.size, y: top * paddedGrid.size, width: W * paddedGrid.size, height: H * paddedGrid.size }));
  const paddedMarks = svg('g');
  paddedGrid.marks.append(paddedMarks);
  const dxGrid = cellGrid(H, W, 220, (i, j) => number(b.input_grad[i][j], { class: 'grad-cell', role: 'sb-dx' }), { label: 'gradient of the input', grid: 'sb-dx' });
  const dxLine = h('p', { class: 'sb-sum sb-dx-sum', 'aria-live': 'off' });

  /** Position (i, j) of the padded input's gradient: the rotated kernel's window on δ̃. */
  function showDx(i, j) {
    const size = fullGrid.size;
    fullGrid.marks.replaceChildren(svg('rect', {
      class: 'span', x: j * size, y: i * size, width: ((kw - 1) * d + 1) * size, height: ((kh - 1) * d + 1) * size,
    }));
    const terms = [];
    for (let a = 0; a < kh; a++) {
      for (let c = 0; c < kw; c++) {
        const [y, x] = [i + a * d, j + c * d];
        fullGrid.marks.append(svg('rect', { class: 'tap', x: x * size + 2, y: y * size + 2, width: size - 4, height: size - 4 }));
        terms.push(`${paren(b.rotated_kernel[a][c])}·${paren(b.full_delta[y][x])}`);
      }
    }
    const ps = paddedGrid.size;
    paddedMarks.replaceChildren(svg('rect', { class: 'current', x: j * ps + 1, y: i * ps + 1, width: ps - 2, height: ps - 2 }));
    const [xi, xj] = [i - top, j - left];
    const inside = xi >= 0 && xj >= 0 && xi < H && xj < W;
    dxGrid.marks.replaceChildren(inside ? svg('rect', { class: 'current', x: xj * dxGrid.size + 1, y: xi * dxGrid.size + 1, width: dxGrid.size - 2, height: dxGrid.size - 2 }) : '');
    dxLine.dataset.position = `${i},${j}`;
    dxLine.replaceChildren(h('strong', {}, `dL/dx̃[${i}, ${j}] = `), `${terms.join(' + ')} = `,
      h('strong', { 'data-role': 'sb-dx-value', 'data-value': String(b.padded_input_grad[i][j]) }, fmt(b.padded_input_grad[i][j])),
      inside ? [' = ', h('strong', {}, `dL/dx[${xi}, ${xj}]`)] : ' — padding: cropped away, it is not part of the input.');
  }
  const dxPlayer = makePlayer('dx', Rh, Rw, showDx, 'position of the rotated kernel');
  dxPlayer.follow(paddedGrid);
  dxPlayer.follow(fullGrid);
  dxPlayer.follow(dxGrid, (i, j) => [i + top, j + left]);

  // -- dL/dW ---------------------------------------------------------------------------------
  const inputGrid = cellGrid(Hp, Wp, 260, (i, j) => {
    const inside = i >= top && i < top + H && j >= left && j < left + W;
    const value = inside ? r.input[i - top][j - left] : 0;
    return { text: inside ? fmt(value) : '0', value, class: inside ? 'in-cell' : 'pad-cell' };
  }, { label: 'padded input', grid: 'sb-xp' });
  const deltaKernel = cellGrid(Ho, Wo, 150, (i, j) => number(b.delta[i][j], { class: b.delta[i][j] ? 'delta-cell hot still' : 'delta-cell still' }), { label: 'delta as the kernel', grid: 'sb-delta-kernel' });
  const dkGrid = cellGrid(kh, kw, 150, (a, c) => number(b.effective_weight_grad[a][c], { class: 'grad-cell', role: convolution ? 'sb-dk' : 'sb-dw' }), { label: 'gradient of the applied kernel', grid: 'sb-dk' });
  const dwGrid = convolution ? cellGrid(kh, kw, 150, (a, c) => number(b.weight_grad[a][c], { class: 'grad-cell', role: 'sb-dw' }), { label: 'gradient of the stored kernel', grid: 'sb-dw' }) : null;
  const dwLine = h('p', { class: 'sb-sum sb-dw-sum', 'aria-live': 'off' });

  /** Tap (a, c) of the applied kernel: the padded input under it at every output, times δ. */
  function showDw(a, c) {
    const size = inputGrid.size;
    inputGrid.marks.replaceChildren(svg('rect', {
      class: 'span', x: c * d * size, y: a * d * size, width: (s * (Wo - 1) + 1) * size, height: (s * (Ho - 1) + 1) * size,
    }));
    const terms = [];
    let zeros = 0;
    for (let i = 0; i < Ho; i++) {
      for (let j = 0; j < Wo; j++) {
        const [y, x] = [i * s + a * d, j * s + c * d];
        inputGrid.marks.append(svg('rect', { class: b.delta[i][j] ? 'tap' : 'tap quiet', x: x * size + 2, y: y * size + 2, width: size - 4, height: size - 4 }));
        const inside = y >= top && y < top + H && x >= left && x < left + W;
        if (b.delta[i][j]) terms.push(`${paren(b.delta[i][j])}·${paren(inside ? r.input[y - top][x - left] : 0)}`);
        else zeros += 1;
      }
    }
    const mark = (grid, [p, q]) => grid.marks.replaceChildren(svg('rect', { class: 'current', x: q * grid.size + 1, y: p * grid.size + 1, width: grid.size - 2, height: grid.size - 2 }));
    mark(dkGrid, [a, c]);
    if (dwGrid) mark(dwGrid, [kh - 1 - a, kw - 1 - c]);
    dwLine.dataset.tap = `${a},${c}`;
    dwLine.replaceChildren(h('strong', {}, `dL/dK[${a}, ${c}] = Σ δ[i, j]·x̃[i·${s} + ${a}·${d}, j·${s} + ${c}·${d}] = `),
      terms.length ? `${terms.join(' + ')}` : '0', zeros ? ` (+ ${zeros} position${zeros > 1 ? 's' : ''} where δ = 0)` : '', ' = ',
      h('strong', { 'data-role': 'sb-dk-value', 'data-value': String(b.effective_weight_grad[a][c]) }, fmt(b.effective_weight_grad[a][c])),
      convolution ? [' = ', h('strong', {}, `dL/dW[${kh - 1 - a}, ${kw - 1 - c}]`), ' (the stored kernel is the applied one turned back by 180°)'] : ' = dL/dW at the same place.');
  }
  const dwPlayer = makePlayer('dw', kh, kw, showDw, 'kernel tap');
  dwPlayer.follow(dkGrid);
  if (dwGrid) dwPlayer.follow(dwGrid, (a, c) => [kh - 1 - a, kw - 1 - c]);

  const fig = (grid, caption) => h('figure', {}, grid.element || grid, h('figcaption', {}, caption));
  const deltaText = one ? `δ is 1 at output (${one[0]}, ${one[1]}) and 0 elsewhere: as if the loss were that one output.` : 'δ is 1 at every output: as if the loss were the sum of the outputs.';
  const element = h('section', { class: 'sb-backward', 'aria-label': 'backward pass of the sandbox convolution' },
    h('h3', {}, 'Backward pass: δ flows back'),
    h('p', { class: 'small' }, deltaText, ' Click a cell of δ to put the 1 there.'),
    h('h4', {}, 'dL/dx: the full convolution of δ with the rotated kernel'),
    h('p', { class: 'small muted' },
      s > 1 ? `Spread δ by the stride (${s - 1} zero${s > 2 ? 's' : ''} between neighbours), ` : 'Stride 1: nothing to spread. ',
      `pad it fully — d·(k − 1) = ${eh} row${eh === 1 ? '' : 's'} and ${ew} column${ew === 1 ? '' : 's'} on every side — into δ̃, and slide the ${convolution ? 'applied kernel turned back: the stored W' : 'kernel turned by 180°'} over it. `,
      `The result is the gradient of the padded input x̃ (${Hp}×${Wp}${Rh < Hp || Rw < Wp ? '; the last rows or columns no window read stay 0' : ''}); cropping the forward padding (${top}, ${bottom}, ${left}, ${right}) leaves dL/dx.`),
    h('div', { class: 'sb-picture' },
      fig(deltaGrid, `δ ${Ho}×${Wo} (click a cell)`),
      spreadGrid ? [h('span', { class: 'op' }, '→'), fig(spreadGrid, `spread by s = ${s}`)] : null,
      h('span', { class: 'op' }, '→'),
      fig(fullGrid, `δ̃ ${Fh}×${Fw}, padded fully`),
      h('span', { class: 'op' }, '⋆'),
      h('figure', { class: 'sb-kernel' }, rotatedGrid, h('figcaption', {}, convolution ? 'rot180(applied) = stored W' : 'rot180(W)')),
      h('span', { class: 'op' }, '='),
      fig(paddedGrid, `dL/dx̃ ${Hp}×${Wp} (frame: the input)`),
      h('span', { class: 'op' }, '→'),
      fig(dxGrid, `crop → dL/dx ${H}×${W}`)),
    dxPlayer.controls(h('span', { class: 'keys small' }, h('span', { class: 'key key-tap' }), 'rotated kernel taps', h('span', { class: 'key key-stride' }), 'zero from the stride', h('span', { class: 'key key-pad' }), 'padding (0)')),
    dxLine,
    h('h4', {}, 'dL/dW: the padded input correlated with δ'),
    h('p', { class: 'small muted' }, `Each kernel tap (a, b) multiplied x̃[i·s + a·d, j·s + b·d] into output (i, j), so its gradient sums those inputs times δ: δ slides over x̃ like a kernel whose entries lie s = ${s} apart, one step of d = ${d} per tap.`
      + (convolution ? ' Convolution mode: this is the gradient of the applied (turned) kernel; the stored W gets it turned back by 180°.' : '')),
    h('div', { class: 'sb-picture' },
      fig(inputGrid, `x̃: input ${H}×${W} padded to ${Hp}×${Wp}`),
      h('span', { class: 'op' }, '⋆'),
      fig(deltaKernel, `δ ${Ho}×${Wo}, entries ${s} apart`),
      h('span', { class: 'op' }, '='),
      fig(dkGrid, convolution ? 'dL/dK (applied kernel)' : 'dL/dW'),
      dwGrid ? [h('span', { class: 'turn' }, '↻ 180°'), fig(dwGrid, 'dL/dW (stored)')] : null),
    dwPlayer.controls(h('span', { class: 'keys small' }, h('span', { class: 'key key-tap' }), 'inputs times δ ≠ 0', h('span', { class: 'key key-quiet' }), 'δ = 0 there')),
    dwLine);
  return { element, players: [dxPlayer, dwPlayer] };
}
