// Small building blocks shared by the backward view and the sandbox: elements, MathML and
// number grids (with corner markers that make a 180° rotation visible).
import { css, diverging, fmt, inkOn } from './colors.js';
import { escape, h, mathml, shapeText, svg } from './dom.js';

export { escape, h, shapeText, svg };

/** A <math> element from MathML markup in a span of class formula(-inline). */
export function math(markup, block = false) {
  return h('span', { class: block ? 'formula' : 'formula-inline' }, mathml(markup, block ? 'block' : 'inline'));
}

/** A number as MathML, negative ones in parentheses when they are a factor. */
export function mn(value, paren = false) {
  const text = fmt(value);
  if (!text.startsWith('−')) return `<mn>${text}</mn>`;
  const negative = `<mrow><mo>−</mo><mn>${text.slice(1)}</mn></mrow>`; // first in its row: a prefix minus
  return paren ? `<mrow><mo>(</mo>${negative}<mo>)</mo></mrow>` : negative;
}

/** A compact number for grid cells: 3 significant digits, exponent form below 0.001. */
export function short(value) {
  if (value === 0 || Math.abs(value) >= 1e-3) return fmt(value, 3);
  return value.toExponential(2).replace(/-/g, '−');
}

/** ∂L/∂(name) as MathML. */
export const dL = (name) => `<mfrac><mrow><mo>∂</mo><mi>L</mi></mrow><mrow><mo>∂</mo>${name}</mrow></mfrac>`;

/**
 * A table of numbers `values[r][c]`, cells coloured on a diverging scale up to `limit`.
 * `cell(r, c)` may return {class, title, text} to mark or relabel a cell; every cell
 * carries its exact value in `data-value` (and `data-role` = `cellRole` if given). `corners` adds the four corner markers
 * (`rotated`: where they land after turning the grid by 180°).
 */
export function numberGrid(values, { limit, role, label, cell, cellRole, corners, rotated } = {}) {
  const scale = limit ?? Math.max(1e-12, ...values.flat().map((v) => Math.abs(v ?? 0)));
  const markers = corners ? cornerMarkers(values.length, values[0].length, rotated) : new Map();
  const rows = values.map((row, r) => h('tr', {}, row.map((value, c) => {
    const extra = cell ? cell(r, c) || {} : {};
    const marker = markers.get(`${r},${c}`);
    const colour = diverging(0.65 * (value ?? 0), scale); // light enough for dark numbers on every cell
    return h('td', {
      class: [extra.class, marker].filter(Boolean).join(' ') || null,
      title: extra.title ?? String(value),
      'data-value': value === null ? null : String(value),
      'data-role': cellRole,
      style: value === null ? null : `background:${css(colour)};color:${inkOn(colour)}`,
    }, extra.text ?? short(value));
  })));
  return h('table', { class: 'numbers grid', 'data-role': role, 'aria-label': label }, h('tbody', {}, rows));
}

/** Corner cell -> marker classes: 'mark mark-a at-tl' and so on, moved by a 180° turn. */
function cornerMarkers(rows, cols, rotated) {
  const turn = { tl: 'br', tr: 'bl', bl: 'tr', br: 'tl' };
  const corners = [[0, 0, 'a', 'tl'], [0, cols - 1, 'b', 'tr'], [rows - 1, 0, 'c', 'bl'], [rows - 1, cols - 1, 'd', 'br']];
  const markers = new Map();
  for (const [r, c, name, at] of corners) {
    const key = rotated ? `${rows - 1 - r},${cols - 1 - c}` : `${r},${c}`;
    if (!markers.has(key)) markers.set(key, `mark mark-${name} at-${rotated ? turn[at] : at}`);
  }
  return markers;
}

/** "32×11×11" */
