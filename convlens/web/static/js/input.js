// The input panel: the image the network sees (large), the sample gallery, a drawing canvas
// that re-runs the network as you draw, and upload by file picker or drag and drop.
import { api } from './api.js';
import { showError } from './state.js';
import { h, paintImage, shapeText } from './forward-maps.js';
import { activeElement } from './dom.js';

const SHOW_EVERY_MS = 100; // drawing re-runs the network at most ~10 times a second
const DRAW_PIXELS = 224; // the drawing canvas's longer side, in canvas pixels

/**
 * `store.show`, one request at a time: while one runs, only the newest waiting image is kept,
 * so a fast stream of drawings never piles up requests or lands out of order.
 */
function latestOnly(store) {
  let running = false;
  let waiting;
  const show = async (image) => {
    if (running) {
      waiting = image;
      return;
    }
    running = true;
    try {
      await store.show(image);
    } finally {
      running = false;
    }
    if (waiting !== undefined) {
      const next = waiting;
      waiting = undefined;
      await show(next);
    }
  };
  return show;
}

/** fn at most once per `ms`, the last call always delivered. */
function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - performance.now();
    if (wait <= 0) {
      last = performance.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = performance.now();
        fn();
      }, wait);
    }
  };
}

/** Whether a sample's label is one of the model's classes (else the sample is unlabelled). */
const labelled = (store, sample) => store.get('model').classes.includes(sample.label);

/** What the caption says of a sample. */
const sampleCaption = (store, sample) => (labelled(store, sample)
  ? `sample ${sample.id + 1} · labelled “${sample.label}”`
  : `sample ${sample.id + 1} (“${sample.label}”) · unlabelled: no class of this model`);

/** The sample gallery: one button per sample; the shown one is pressed. */
function gallery(store, show, describe) {
  const buttons = store.get('samples').map((sample) => {
    const thumb = h('canvas', { class: 'thumb', 'aria-hidden': 'true' });
    paintImage(thumb, sample.image);
    const known = labelled(store, sample);
    const label = known ? sample.label : 'unlabelled';
    return h('button', {
      type: 'button', class: known ? 'sample' : 'sample unlabelled', 'data-sample': sample.id,
      'aria-label': `sample ${sample.id + 1}: ${known ? sample.label : `“${sample.label}”, unlabelled`}`,
      title: known ? sample.label : `“${sample.label}”: unlabelled (no class of this model)`,
      onclick: () => {
        describe(sampleCaption(store, sample));
        show(sample.id);
      },
    }, thumb, h('span', { class: 'sample-label', text: label }));
  });
  // one tab stop for the whole gallery (the shown sample); arrow keys move between samples
  const element = h('div', { class: 'gallery', role: 'toolbar', 'aria-label': 'Sample images: arrow keys choose' }, buttons);
  let stop = buttons[0];
  const rove = (button) => {
    stop = button;
    buttons.forEach((b) => { b.tabIndex = b === stop ? 0 : -1; });
  };
  element.addEventListener('keydown', (event) => {
    const at = buttons.indexOf(event.target);
    const step = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 }[event.key];
    if (at < 0 || !(step || event.key === 'Home' || event.key === 'End')) return;
    event.preventDefault();
    const next = event.key === 'Home' ? 0 : event.key === 'End' ? buttons.length - 1
      : Math.max(0, Math.min(buttons.length - 1, at + step));
    rove(buttons[next]);
    buttons[next].focus();
  });
  element.addEventListener('focusin', (event) => buttons.includes(event.target) && rove(event.target));
  if (buttons.length) rove(buttons[0]);
  // a label wraps between words only; a word too wide for the thumbnail ("espresso" at
  // 1280 px) is set smaller, and may break inside only if it still does not fit
  requestAnimationFrame(() => element.querySelectorAll('.sample-label').forEach((label) => {
    if (label.scrollWidth > label.clientWidth) label.classList.add('long');
  }));
  const update = () => {
    for (const button of buttons) {
      const pressed = store.get('image') === Number(button.dataset.sample);
      button.setAttribute('aria-pressed', String(pressed));
      if (pressed && !element.contains(activeElement())) rove(button);
    }
  };
  return { element, update };
}

/**
 * The drawing pad: white strokes on black, downsampled to the model's H × W (grey, or
 * repeated into RGB) and shown to the network while drawing.
 */
function drawingPad(shape, show, describe, store) {
  const [C, H, W] = shape;
  const k = Math.max(1, Math.ceil(DRAW_PIXELS / Math.max(H, W)));
  const canvas = h('canvas', {
    id: 'draw', width: W * k, height: H * k, tabindex: 0,
    'aria-label': `Drawing pad: draw with the mouse, a pen or a finger; it is shrunk to ${W}×${H} pixels`,
  });
  const context = canvas.getContext('2d', { willReadFrequently: true });
  const clear = () => {
    context.fillStyle = '#000';
    context.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  Object.assign(context, { strokeStyle: '#fff', fillStyle: '#fff', lineCap: 'round', lineJoin: 'round' });
  context.lineWidth = 0.09 * Math.max(canvas.width, canvas.height);

  /** The drawing as the model's input: each k × k block averaged. */
  const image = () => {
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const grey = new Float32Array(H * W);
    for (let y = 0; y < H * k; y++) {
      for (let x = 0; x < W * k; x++) {
        grey[Math.floor(y / k) * W + Math.floor(x / k)] += pixels[4 * (y * canvas.width + x)] / (255 * k * k);
      }
    }
    const data = new Float32Array(C * H * W);
    for (let c = 0; c < C; c++) data.set(grey, c * H * W);
    return { shape: [C, H, W], data };
  };
  let drawn = null; // the last image this pad showed the network
  const send = () => {
    describe('your drawing');
    drawn = image();
    show(drawn);
  };
  const sendSoon = throttle(send, SHOW_EVERY_MS);

  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) * (canvas.width / box.width);
    return [x, (event.clientY - box.top) * (canvas.height / box.height)];
  };
  let drawing = false;
  canvas.addEventListener('pointerdown', (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = point(event);
    context.beginPath();
    context.arc(x, y, context.lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
    context.beginPath();
    context.moveTo(x, y);
    sendSoon();
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    context.lineTo(x, y);
    context.stroke();
    sendSoon();
  });
  const stop = () => {
    if (!drawing) return;
    drawing = false;
    send();
  };
  canvas.addEventListener('pointerup', stop);
  canvas.addEventListener('pointercancel', stop);

  const guide = h('div', { class: 'draw-guide', 'aria-hidden': 'true' });
  // the network is shown the empty pad when it was showing the drawing: no old prediction stays
  const clearAll = () => {
    clear();
    if (store.get('image') === drawn) send();
  };
  const clearButton = h('button', { type: 'button', text: 'Clear', onclick: clearAll, 'aria-label': 'Clear the drawing pad' });
  return h('div', { class: 'input-block input-draw' },
    h('h3', { text: 'Draw' }),
    h('div', { class: 'draw-frame', style: `aspect-ratio: ${W} / ${H}` }, canvas, guide),
    h('div', { class: 'draw-bar' }, clearButton, h('span', { class: 'muted', text: 'draw big, inside the guide' })));
}

/** Upload: a file picker, and dropping a picture anywhere on `panel`. */
function uploader(panel, show, describe) {
  const use = async (file) => {
    if (!file) return;
    try {
      const image = await api.upload(file);
      describe(`uploaded: ${file.name}`);
      await show(image);
    } catch (error) {
      showError(`“${file.name}” could not be used: ${error.message.replace(/\.$/, '')}.`);
    }
  };
  const picker = h('input', {
    type: 'file', id: 'upload', accept: 'image/*', class: 'visually-hidden',
    onchange: (event) => {
      use(event.target.files[0]);
      event.target.value = ''; // the same file again is a new choice
    },
  });
  let depth = 0; // dragenter/leave fire for every child: count them
  const dragging = (on) => panel.classList.toggle('dropping', on);
  panel.addEventListener('dragenter', (event) => {
    event.preventDefault();
    depth += 1;
    dragging(true);
  });
  panel.addEventListener('dragleave', () => {
    depth -= 1;
    if (depth <= 0) dragging(false);
  });
  panel.addEventListener('dragover', (event) => event.preventDefault());
  panel.addEventListener('drop', (event) => {
    event.preventDefault();
    depth = 0;
    dragging(false);
    const file = event.dataTransfer.files[0];
    if (file) use(file);
    else showError('Only picture files can be dropped here (PNG, JPEG, GIF, BMP, WebP…).');
  });
  return h('div', { class: 'input-block input-upload' },
    h('h3', { text: 'Upload' }),
    h('div', { class: 'drop-zone' },
      picker,
      h('label', { for: 'upload', class: 'button', text: 'Choose a picture…' }),
      h('p', { class: 'muted', text: 'or drop one anywhere on this panel' }),
      h('p', { class: 'muted fine', text: 'It is cropped to the centre and scaled to the model’s input.' })));
}

export function mount(element, store) {
  const shape = store.get('model').input_shape;
  const preview = h('canvas', { class: 'input-preview', role: 'img', 'aria-label': 'The image the network sees' });
  const caption = h('figcaption', {});
  let source = '';
  const describe = (text) => {
    source = text;
  };
  store.subscribe('source', describe); // an image shown from elsewhere (a notebook's kernel) says what it is
  const show = latestOnly(store);
  const samples = gallery(store, show, describe);

  element.replaceChildren(
    h('h2', { text: 'Input' }),
    h('p', {
      class: 'muted lead',
      text: 'Pick a sample, draw, or drop a picture: every view below updates from the network’s real numbers.',
    }),
    h('div', { class: 'input-grid' },
      h('figure', { class: 'input-block input-current' }, preview, caption),
      h('div', { class: 'input-block input-samples' }, h('h3', { text: 'Samples' }), samples.element),
      drawingPad(shape, show, describe, store),
      uploader(element, show, describe)),
    h('div', { class: 'drop-hint', 'aria-hidden': 'true', text: 'Drop the picture to run the network on it' }));

  store.subscribe('trace', (trace) => {
    paintImage(preview, trace.input);
    const sample = typeof store.get('image') === 'number' ? store.get('samples')[store.get('image')] : null;
    caption.replaceChildren(h('b', { text: sample ? sampleCaption(store, sample) : source }),
      h('span', { class: 'muted', text: `input ${shapeText(shape)}` }));
    samples.update();
  });
}
