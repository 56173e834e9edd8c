// The hyperparameter sandbox: choose the input size, kernel, stride, padding, dilation,
// anchor and mode; the engine runs that convolution (POST /api/sandbox) and the page shows
// the padded input, the kernel (and the one actually applied), the output, the resolved
// padding and the output-size formula, with the kernel sliding over the input.
import { api } from './api.js';
import { fmt } from './colors.js';
import { h, math, mn, numberGrid, svg } from './backward-ui.js';

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
  const form = h('form', { class: 'sb-controls', 'aria-label': 'convolution settings', onsubmit: (e) => e.preventDefault() },
    h('fieldset', {}, h('legend', {}, 'Input'), inH, inW),
    h('fieldset', {}, h('legend', {}, 'Kernel'), kH, kW),
    h('fieldset', {}, h('legend', {}, 'Sliding'), stride, dilation),
    h('fieldset', {}, h('legend', {}, 'Padding'), h('label', { class: 'sb-field wide', for: 'sb-padding' }, 'padding', padding)),
    h('fieldset', {}, h('legend', {}, 'Anchor (ay, ax)'), ay, ax, anchorNote),
    h('fieldset', {}, h('legend', {}, 'Mode'), h('label', { class: 'sb-field wide', for: 'sb-mode' }, 'mode', mode),
      h('p', { class: 'sb-hint' }, 'Correlation is what frameworks call convolution; true convolution turns the kernel by 180° first.')));

  const message = h('p', { id: 'sandbox-message', role: 'status', 'aria-live': 'polite', hidden: true });
  const stage = h('div', { class: 'sb-stage' });
  element.replaceChildren(
    h('h2', {}, 'Hyperparameter sandbox'),
    h('p', { class: 'sb-intro' }, 'Change the settings: the engine runs a real Conv2D on a small numbered input ',
      'with a numbered kernel, and the page shows every number. Padding cells are grey zeros.'),
    h('div', { class: 'sb-layout' }, form, h('div', { class: 'sb-main' }, message, stage)));

  const value = (id) => document.getElementById(id).value.trim();
  let seq = 0;
  let timer = null;
  let player = null; // the current picture's animation

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
    return {
      body: {
        input_size: [numbers['sb-input-h'], numbers['sb-input-w']],
        kernel_size: [kh, kw],
        stride: [numbers['sb-stride'], numbers['sb-stride']],
        dilation: [numbers['sb-dilation'], numbers['sb-dilation']],
        padding: /^\d+$/.test(pad) ? Number(pad) : pad,
        anchor: hasAnchor ? [numbers['sb-anchor-y'] ?? Math.floor((kh - 1) / 2), numbers['sb-anchor-x'] ?? Math.floor((kw - 1) / 2)] : null,
        mode: value('sb-mode'),
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
      const result = await api.sandbox(body);
      if (mine !== seq) return;
      message.hidden = true;
      stage.classList.remove('stale');
      element.dataset.status = 'ready';
      const playing = player ? player.playing : false;
      if (player) player.stop();
      player = draw(stage, body, result);
      if (playing) player.toggle();
    } catch (failure) {
      if (mine === seq) invalid(failure.message);
    }
  }

  /** Say why in the sandbox itself; the last valid picture stays, dimmed. */
  function invalid(text) {
    message.hidden = false;
    message.replaceChildren(h('strong', {}, 'These settings do not work: '), text);
    stage.classList.add('stale');
    if (player) player.pause();
    element.dataset.status = 'invalid';
  }

  form.addEventListener('input', schedule);
  form.addEventListener('change', schedule);
  schedule();
}

/** The padded input, the kernel(s), the output and the formulas for one engine result. */
function draw(stage, body, r) {
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
    return { text: inside ? fmt(value) : '0', class: inside ? 'in-cell' : 'pad-cell', role: inside ? null : 'pad-cell' };
  });
  const outputGrid = cellGrid(Ho, Wo, 300, (i, j) => ({ text: fmt(r.output[i][j]), class: 'out-cell' }));
  const kernels = h('div', { class: 'sb-kernels' },
    kernelFigure(convolution ? 'stored kernel W' : 'kernel W', r.kernel, convolution ? false : null, convolution ? r.anchor : anchor),
    convolution ? h('span', { class: 'turn' }, '↓ turned 180°') : null,
    convolution ? kernelFigure('applied: W turned 180°', r.effective_kernel, true, anchor) : null);
  const line = h('p', { class: 'sb-sum', 'aria-live': 'off' });
  const playButton = h('button', { type: 'button', class: 'sb-play', 'aria-pressed': 'false' }, '▶ play');
  const at = { i: 0, j: 0 };

  /** Show output (i, j): the kernel's taps on the padded input, the products, the value. */
  function show(i, j) {
    Object.assign(at, { i, j });
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
  const step = (by) => {
    const k = (((at.i * Wo + at.j + by) % (Ho * Wo)) + Ho * Wo) % (Ho * Wo);
    show(Math.floor(k / Wo), k % Wo);
  };
  const player = {
    playing: false,
    timer: null,
    toggle() { return player.playing ? player.pause() : player.play(); },
    play() {
      player.playing = true;
      playButton.textContent = '❚❚ pause';
      playButton.setAttribute('aria-pressed', 'true');
      player.timer = setInterval(() => step(1), STEP_MS);
    },
    pause() {
      player.playing = false;
      playButton.textContent = '▶ play';
      playButton.setAttribute('aria-pressed', 'false');
      clearInterval(player.timer);
    },
    stop() { clearInterval(player.timer); },
  };
  playButton.addEventListener('click', () => player.toggle());
  outputGrid.element.addEventListener('mousemove', (event) => {
    const cell = event.target.closest('[data-i]');
    if (!cell) return;
    if (player.playing) player.pause();
    show(Number(cell.dataset.i), Number(cell.dataset.j));
  });

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
    h('div', { class: 'sb-player' },
      playButton,
      h('button', { type: 'button', 'aria-label': 'previous output position', onclick: () => { player.pause(); step(-1); } }, '◀ step'),
      h('button', { type: 'button', 'aria-label': 'next output position', onclick: () => { player.pause(); step(1); } }, 'step ▶'),
      h('span', { class: 'keys small' }, h('span', { class: 'key key-tap' }), 'kernel taps', h('span', { class: 'key key-anchor' }), 'anchor', h('span', { class: 'key key-pad' }), 'padding (0)')),
    line);
  show(0, 0);
  return player;
}

const paren = (v) => (v < 0 ? `(${fmt(v)})` : fmt(v));

/** An SVG grid of rows × cols numbered cells, sized to fit `room` pixels, with a layer for marks. */
function cellGrid(rows, cols, room, cell) {
  const size = Math.max(10, Math.min(34, Math.floor(room / Math.max(rows, cols))));
  const element = svg('svg', { class: 'sb-grid', width: cols * size, height: rows * size, role: 'img', 'aria-label': `${rows} by ${cols} grid` });
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const c = cell(i, j);
      const g = svg('g', { class: c.class, 'data-i': i, 'data-j': j, 'data-role': c.role });
      g.append(svg('rect', { x: j * size, y: i * size, width: size, height: size }));
      if (size >= 16) g.append(svg('text', { x: (j + 0.5) * size, y: (i + 0.5) * size, 'font-size': Math.min(13, size * 0.42) }, c.text));
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
