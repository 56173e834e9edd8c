// The explainer as a notebook widget (anywidget loads this file; convlens/widget.py is its
// kernel side). The page's own modules, sent by the kernel as text, are loaded from blob
// URLs into a shadow root of the widget's own, and api.js gets a transport that carries each
// request as a widget message: the kernel answers with the server's routes. Nothing is
// fetched: every file comes from the package.

// A relative import of another page module: from './x.js', import './x.js', import('./x.js').
const IMPORT = /(\bfrom\s*|\bimport\s*\(?\s*)(['"])\.\/([\w.-]+\.js)\2/g;

/**
 * `import(name)` for the page's modules `sources` ({file name: text}): each becomes a blob
 * URL whose relative imports point at the others' URLs. Every call of this function makes a
 * fresh module graph, so every widget view has its own store and its own transport.
 */
function moduleLoader(sources) {
  const urls = new Map();
  const url = (name, importers = []) => {
    if (urls.has(name)) return urls.get(name);
    if (!Object.hasOwn(sources, name)) throw new Error(`the package has no page module ${name}`);
    if (importers.includes(name)) throw new Error(`the page's modules import each other in a cycle: ${[...importers, name].join(' → ')}`);
    const text = sources[name].replace(IMPORT, (_, head, quote, dependency) =>
      `${head}${quote}${url(dependency, [...importers, name])}${quote}`);
    const made = URL.createObjectURL(new Blob([`${text}\n//# sourceURL=convlens/${name}\n`], { type: 'text/javascript' }));
    urls.set(name, made);
    return made;
  };
  return {
    load: (name) => import(/* webpackIgnore: true */ url(name)),
    /** Once the graph is loaded, its URLs are no longer needed. */
    release: () => urls.forEach((made) => URL.revokeObjectURL(made)),
  };
}

/**
 * api.js's transport over widget messages: {kind, id, method, path, body} to the kernel (an
 * upload's file as the message's buffer); the answer {kind, id, status} carries the route's
 * JSON as its buffer. Resolves to {status, payload}, as the page's HTTP transport does.
 */
function messageTransport(model) {
  let next = 0;
  const waiting = new Map();
  const answer = (message, buffers) => {
    if (!message || message.kind !== 'convlens-response') return;
    const call = waiting.get(message.id);
    if (!call) return;
    waiting.delete(message.id);
    let payload = {};
    try {
      if (buffers && buffers.length) payload = JSON.parse(new TextDecoder().decode(buffers[0]));
    } catch {
      payload = { detail: 'the kernel answered something that is not JSON' };
    }
    call.resolve({ status: message.status, payload });
  };
  model.on('msg:custom', answer);
  let closed = false;
  const send = async (method, path, body) => {
    if (closed) return { status: 503, payload: { detail: 'the widget was closed' } };
    next += 1;
    const message = { kind: 'convlens-request', id: next, method, path };
    const buffers = [];
    if (body instanceof FormData) {
      const file = body.get('file');
      message.file = { name: file.name, type: file.type };
      buffers.push(await file.arrayBuffer());
    } else if (body !== undefined) {
      message.body = body;
    }
    return new Promise((resolve) => {
      waiting.set(message.id, { resolve });
      model.send(message, undefined, buffers);
    });
  };
  const close = () => {
    closed = true;
    model.off('msg:custom', answer);
    for (const call of waiting.values()) {
      call.resolve({ status: 503, payload: { detail: 'the widget was closed' } });
    }
    waiting.clear();
  };
  return { send, close };
}

/** What the kernel asks to show: a sample's number, or an image with words on where it came from. */
async function imageOf(model, api) {
  const shown = model.get('_image');
  if (!shown) return {};
  if (typeof shown.sample === 'number') return { image: shown.sample };
  return { image: api.decodeArray(shown.image), source: shown.source };
}

async function render({ model, el }) {
  const host = document.createElement('div');
  host.className = 'convlens-widget';
  // keys typed in the widget (the sandbox's fields) are not notebook shortcuts
  host.setAttribute('data-lm-suppress-shortcuts', 'true');
  for (const type of ['keydown', 'keyup', 'keypress']) host.addEventListener(type, (event) => event.stopPropagation());
  const root = host.attachShadow({ mode: 'open' });
  root.innerHTML = `<style>${model.get('_styles')}</style><div class="convlens-page">${model.get('_page')}</div>`;
  el.replaceChildren(host);

  const transport = messageTransport(model);
  const loader = moduleLoader(model.get('_modules'));
  const stopped = [];
  try {
    const [api, explainer, state] = await Promise.all(['api.js', 'explainer.js', 'state.js'].map(loader.load));
    loader.release();
    api.setTransport(transport.send);
    const first = await imageOf(model, api);
    if (first.source) state.store.set({ source: first.source });
    const store = await explainer.mount(root, { image: first.image });

    // the kernel shows another image, or picks another target class
    const showImage = async () => {
      const next = await imageOf(model, api);
      if (next.image === undefined) return;
      if (next.source) store.set({ source: next.source }); // a sample's caption comes from the sample
      await store.show(next.image);
    };
    const pickTarget = () => {
      const target = model.get('target');
      if (target === null || target === store.get('target')) return;
      store.set({ target });
      store.retrace();
    };
    model.on('change:_image', showImage);
    model.on('change:target', pickTarget);
    stopped.push(() => model.off('change:_image', showImage), () => model.off('change:target', pickTarget));
    // and the kernel learns the target the widget traced with (a sample's label, a click)
    const tellTarget = (trace) => {
      const target = trace.target === undefined ? null : trace.target;
      if (model.get('target') !== target) {
        model.set('target', target);
        model.save_changes();
      }
    };
    store.subscribe('trace', tellTarget);
    store.subscribe('gradients', tellTarget);
    if (model.get('target') !== null) pickTarget(); // set in the kernel before this view existed
    else if (store.get('trace')) tellTarget(store.get('trace'));
    host.dataset.ready = 'true'; // tests wait for this
  } catch (error) {
    const banner = root.getElementById('error');
    banner.textContent = `the explainer could not start: ${error.message}`;
    banner.hidden = false;
    host.dataset.ready = 'failed';
  }
  return () => {
    stopped.forEach((stop) => stop());
    transport.close();
  };
}

export default { render };
