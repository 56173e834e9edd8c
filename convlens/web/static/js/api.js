// Talking to the explainer's server (over HTTP, or a notebook widget's messages). Arrays travel as {shape, data}: base64 float32.

/** {shape, data} from the server -> {shape, data: Float32Array}. */
export function decodeArray(payload) {
  const text = atob(payload.data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i); // ~5x Uint8Array.from
  return { shape: payload.shape, data: new Float32Array(bytes.buffer) };
}

/** {shape, data: Float32Array} -> the server's {shape, data}. */
export function encodeArray(array) {
  const bytes = new Uint8Array(array.data.buffer, array.data.byteOffset, array.data.byteLength);
  let text = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return { shape: array.shape, data: btoa(text) };
}

/**
 * The page's own transport: HTTP to the server it came from. A transport takes
 * (method, path, body: JSON-able, FormData or undefined) and resolves to {status, payload}.
 */
async function http(method, path, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const start = performance.now();
  const response = await fetch(path, options);
  const answered = performance.now();
  const payload = await response.json().catch(() => ({}));
  // where a click's time goes (bench/bench_page.py reads these): the server, then the JSON
  performance.measure('convlens:server', { start, end: answered });
  performance.measure('convlens:json', { start: answered, end: performance.now() });
  return { status: response.status, payload };
}

let transport = http;

/**
 * Send every request through `fn` from now on instead of HTTP: the notebook widget's
 * transport carries them as widget messages to the kernel, which answers with the same routes.
 */
export function setTransport(fn) {
  transport = fn;
}

async function call(method, path, body) {
  const { status, payload } = await transport(method, path, body);
  if (status < 200 || status >= 300) {
    const detail = payload && payload.detail;
    const message = typeof detail === 'string' ? detail
      : Array.isArray(detail) ? detail.map((d) => `${(d.loc || []).join('.')}: ${d.msg}`).join('; ')
      : `the server answered ${status}`;
    throw new Error(message);
  }
  return payload;
}

/** An image as the request body expects it: a sample number or inline pixels. */
function imageBody(image) {
  return typeof image === 'number' ? { sample: image } : { image: encodeArray(image) };
}

let training = null; // the live training session every trace and explain uses, or null

/** From now on, compute every trace and explain with session `id`'s current weights (null: the served model). */
export function setTraining(id) {
  training = id;
}

/** `body` plus the training session, when there is one. */
const withTraining = (body) => (training ? { ...body, training } : body);

/** The query that asks a training route for the history after step `since` only. */
const after = (since) => (since === null ? '' : `?since=${since}`);

export const api = {
  model: () => call('GET', '/api/model'),
  samples: async () => (await call('GET', '/api/samples')).samples.map((s) => ({
    ...s, image: decodeArray(s.image),
  })),
  /** image: a sample id or {shape, data}; target: a class index or null. */
  trace: (image, target = null) => call('POST', '/api/trace', withTraining({ ...imageBody(image), target })),
  /**
   * The computation behind one value (target null: forward; else its gradient); with
   * `parameter` ('weight' or 'bias', needs a target) the gradient of that parameter at `index`.
   */
  explain: (image, layer, index, target = null, parameter = null) => call('POST', '/api/explain', withTraining({
    ...imageBody(image), layer, index, target, ...(parameter ? { parameter } : {}),
  })),
  upload: async (file) => {
    const form = new FormData();
    form.append('file', file);
    return decodeArray((await call('POST', '/api/upload', form)).image);
  },
  sandbox: (settings) => call('POST', '/api/sandbox', settings),
  /** Live training sessions on a copy of the model (the served model never changes). */
  training: {
    options: () => call('GET', '/api/training'),
    start: (settings) => call('POST', '/api/training', settings),
    /** The session's state; with `since`, only the history after that step (as every
     * route below that answers with the state). */
    state: (id, since = null) => call('GET', `/api/training/${id}${after(since)}`),
    step: (id, steps = 1, since = null) => call('POST', `/api/training/${id}/step${after(since)}`, { steps }),
    run: (id, since = null) => call('POST', `/api/training/${id}/run${after(since)}`),
    pause: (id, since = null) => call('POST', `/api/training/${id}/pause${after(since)}`),
    /** How the last step changed one value: {layer, parameter, index}. */
    update: (id, value) => call('POST', `/api/training/${id}/update`, value),
    kernels: (id) => call('GET', `/api/training/${id}/kernels`),
    keep: (id, name = null) => call('POST', `/api/training/${id}/keep`, name ? { name } : {}),
    remove: (id) => call('DELETE', `/api/training/${id}`),
    /** End a session as the page goes away (the request outlives the page). */
    leave: (id) => (transport === http
      ? fetch(`/api/training/${id}`, { method: 'DELETE', keepalive: true })
      : transport('DELETE', `/api/training/${id}`)).catch(() => {}),
  },
};
