// The page's tiny DOM builder, shared by every view: elements, SVG, MathML.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Where the page's elements live: the document, or a notebook widget's shadow root (each
// widget loads its own copy of these modules, so each has its own scope).
let scope = document;

/** Look the page's elements up inside `root` (a document or a shadow root) from now on. */
export function setScope(root) {
  scope = root;
}

/** The page's element with this id, inside the current scope. */
export const byId = (id) => scope.getElementById(id);

/** The focused element inside the current scope (a shadow root keeps its own). */
export const activeElement = () => scope.activeElement;

/** Every element inside the current scope that matches `selector`. */
export const findAll = (selector) => scope.querySelectorAll(selector);

/** Children worth adding: nested lists flattened; null, undefined and false skipped. */
const present = (children) => children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false);

/** Attributes (`on…` as listeners, `text` as text content; null/false left out), then children. */
function build(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'text') element.textContent = value;
    else element.setAttribute(key, value === true ? '' : value);
  }
  element.append(...present(children));
  return element;
}

/** An HTML element: h('div', {class: 'x', onclick: fn, text: '…'}, child, 'text', ...). */
export const h = (tag, attrs = {}, ...children) => build(document.createElement(tag), attrs, children);

/** An SVG element, attributes and children as for h(). */
export const svg = (tag, attrs = {}, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

/** Replace the children of `element` by the present ones. */
export function fill(element, ...children) {
  element.replaceChildren(...present(children));
  return element;
}

/** A <math> element from MathML markup (its inside); `display` 'block' or 'inline'. */
export function mathml(markup, display = 'block') {
  const holder = document.createElement('span');
  const fixed = markup.replace(/<mo>([()[\]])<\/mo>/g, '<mo stretchy="false">$1</mo>'); // brackets keep their size
  holder.innerHTML = `<math display="${display}">${fixed}</math>`;
  return holder.firstElementChild;
}

/** Text made safe for innerHTML (class names come from the model file). */
export function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

export const shapeText = (shape) => shape.join('×');
