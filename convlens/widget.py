"""The explainer in a notebook: ``Explainer(model, image)`` shows the page's views inline.

>>> from convlens.widget import Explainer
>>> Explainer()  # doctest: +SKIP   (the shipped model and its first sample digit)

How it works, so that there is one implementation of every view and every route:

- **The views are the page's.** The widget sends the page's own ES modules, its CSS and its
  markup (the package's ``web/static`` files, as text) to the notebook, which loads them as
  modules from blob URLs inside a shadow root (``static/js/widget.js``). Nothing is fetched
  over the network: the notebook cannot reach the package's files by URL, and need not.
  Each view gets its own copy of the modules, so two widgets never share a state.
- **The numbers are the server's.** The page talks to its server only through ``api.js``;
  in the widget its transport sends every request as a widget message instead of HTTP, and
  this module answers it by calling the explainer's FastAPI app (:func:`convlens.web.app.
  create_app`) in this process — no server, no port — so the kernel computes with the same
  routes, the same checks and the same :mod:`convlens.explain` functions as ``convlens
  serve``. A bad request is answered with a sentence the widget shows, never an exception.
"""

from __future__ import annotations

import asyncio
import atexit
import io
import json
import os
import re
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

try:
    import anywidget
    import traitlets
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the notebook explainer needs anywidget: pip install 'convlens[notebook]'"
    ) from error

from convlens import nn
from convlens.explain import encode
from convlens.web.app import STATIC, create_app

__all__ = ["Explainer"]

#: The page's files the widget loads: every module but the page's own boot (main.js), the
#: style sheets index.html links (in its order) and the widget's few rules of its own.
WIDGET_ESM = STATIC / "js" / "widget.js"
WIDGET_CSS = STATIC / "css" / "widget.css"
#: A request the frontend may send: the explainer's API, nothing else of the app.
METHODS = {"GET", "POST", "DELETE"}
API_PATH = re.compile(r"/api/[A-Za-z0-9_\-/.]*")
QUERY = re.compile(r"[A-Za-z0-9_=&.\-]*")
#: A request body larger than this (JSON or an uploaded file) is refused in the kernel.
MAX_MESSAGE_BYTES = 16 * 2**20
#: How long one request may take before its answer says so (a training run of 1,000 steps
#: on a large model is the slowest there is).
REQUEST_TIMEOUT = 600.0


class Explainer(anywidget.AnyWidget):
    """The explainer page as a notebook widget, for any convlens model.

    Parameters
    ----------
    model : Sequential, str or PathLike, optional
        A convlens model with an ``input_shape`` ``(C, H, W)``, or a model file (safetensors
        model or checkpoint, or a TF.js ``model.json``). Default: the shipped MNIST model.
    image : ndarray, str, PathLike or int, optional
        The image to explain: an array of the model's input shape (``(C, H, W)``, a batch of
        one, or ``(H, W)`` for one channel) with values in [0, 1]; a picture file (any format
        Pillow reads; scaled and cropped like an upload); or the number of a sample.
        Default: the first sample.
    samples : str, PathLike or list of (image, label), optional
        The sample gallery: a folder of pictures (labels from file names) or pairs. Default:
        bundled MNIST digits for a model that takes them, else none.
    classes : sequence of str, optional
        Class names, for a model that has none.
    save_dir : str or PathLike, optional
        Where the training panel keeps trained copies (default ``./convlens-models/``).

    Attributes
    ----------
    image
        Set it in a later cell to show another image: the widget traces it and redraws.
    target : int or None
        The class the backward pass starts from (the shown sample's label by default); set it
        here or pick it in the widget.
    """

    _esm = WIDGET_ESM
    #: the page's modules {file name: source}, its style sheet and its markup
    _modules = traitlets.Dict().tag(sync=True)
    _styles = traitlets.Unicode().tag(sync=True)
    _page = traitlets.Unicode().tag(sync=True)
    #: what to show: {"sample": i} or {"image": {shape, data}, "source": text}, and "shown":
    #: a count that makes setting the same image again redraw it too
    _image = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    target = traitlets.Int(None, allow_none=True).tag(sync=True)

    def __init__(
        self,
        model: nn.Sequential | str | os.PathLike | None = None,
        image: np.ndarray | str | os.PathLike | int | None = None,
        *,
        samples: str | os.PathLike | Sequence[tuple[np.ndarray, str]] | None = None,
        classes: Sequence[str] | None = None,
        save_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        network = _model(model, classes)
        gallery = _samples(network, samples)
        settings = {} if save_dir is None else {"save_dir": save_dir}
        self._network = network
        self._samples = gallery
        self._classes = network.output_shape(network.input_shape)[0]
        self._app = InProcessApp(create_app(network, gallery, **settings))
        modules, styles, page = page_assets()
        super().__init__(_modules=modules, _styles=styles, _page=page, **kwargs)
        self.on_msg(self._answer)
        self._image_value: np.ndarray | int | None = None
        self._shown = 0
        if image is not None:
            self.image = image

    # -- what the user sets ---------------------------------------------------------------------
    @property
    def model(self) -> nn.Sequential:
        """The model the widget explains."""
        return self._network

    @property
    def image(self) -> np.ndarray | int | None:
        """The image shown: its array (C, H, W), or a sample's number; None: the first sample."""
        return self._image_value

    @image.setter
    def image(self, value: np.ndarray | str | os.PathLike | int) -> None:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            index = int(value)
            if not 0 <= index < len(self._samples):
                raise ValueError(f"sample {index} does not exist ({len(self._samples)} samples)")
            self._image_value = index
            self._shown += 1
            self._image = {"sample": index, "shown": self._shown}
            return
        array, source = _image(value, tuple(self._network.input_shape))
        self._image_value = array
        self._shown += 1
        self._image = {"image": encode(array), "source": source, "shown": self._shown}

    @traitlets.validate("target")
    def _check_target(self, proposal: dict[str, Any]) -> int | None:
        value = proposal["value"]
        if value is not None and not 0 <= value < self._classes:
            raise traitlets.TraitError(
                f"target {value} is not a class of this model (0 to {self._classes - 1})"
            )
        return value

    def close(self) -> None:
        """Close the widget and end its in-process app (and its training sessions)."""
        app = getattr(self, "_app", None)  # None: __init__ failed before making it
        if app is not None:
            app.close()
        super().close()

    # -- the frontend's requests ----------------------------------------------------------------
    def _answer(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        """Answer one request of the page's ``api.js`` (a widget message): always with a
        message — the route's answer, or a status and a sentence — never an exception."""
        if not isinstance(content, dict) or content.get("kind") != "convlens-request":
            return  # not ours (anywidget's own messages, for instance)
        number = content.get("id")
        if not isinstance(number, int | str):
            number = None
        try:
            request = _request(content, buffers or [])
        except Exception as error:  # a malformed message: said, not raised
            self._reply(number, 400, {"detail": f"the widget sent a bad request: {error}"})
            return
        try:
            future = self._app.submit(*request)
        except Exception as error:  # the kernel's side is gone (interpreter shutting down)
            self._reply(number, 503, {"detail": f"the explainer cannot answer now: {error}"})
            return
        future.add_done_callback(lambda done: self._reply(number, *_outcome(done)))

    def _reply(self, number: int | str | None, status: int, payload: bytes | dict) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        message = {"kind": "convlens-response", "id": number, "status": status}
        try:
            self.send(message, buffers=[body])
        except Exception:  # the widget was closed meanwhile: nobody waits
            pass


# -- models, images and samples ---------------------------------------------------------------
def _model(model: Any, classes: Sequence[str] | None) -> nn.Sequential:
    if model is None:
        from convlens.models import pretrained

        network = pretrained()
    elif isinstance(model, str | os.PathLike):
        from convlens.train import load_any_model

        network = load_any_model(os.fspath(model))
    elif isinstance(model, nn.Sequential):
        network = model
    else:
        raise TypeError(
            "model must be a convlens Sequential or a model file's path, "
            f"not {type(model).__name__}"
        )
    if network.input_shape is None:
        raise ValueError(
            "the model has no input shape: set model.input_shape = (C, H, W) (one image's shape)"
        )
    if classes is not None:
        outputs = network.output_shape(network.input_shape)
        if (len(classes),) != tuple(outputs):
            raise ValueError(f"{len(classes)} class names, the model has {outputs[0]} outputs")
        network.classes = list(classes)
    return network


def _samples(network: nn.Sequential, samples: Any) -> list[tuple[np.ndarray, str]]:
    from convlens.web.samples import bundled_samples, folder_samples

    if samples is None:
        return bundled_samples(network)
    if isinstance(samples, str | os.PathLike):
        return folder_samples(samples, network)
    shape = tuple(network.input_shape)
    return [(_image(image, shape)[0], str(label)) for image, label in samples]


def _image(value: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """``value`` as the model's input (float32, ``shape``) and a few words saying what it is."""
    from convlens.data import load_image

    if isinstance(value, str | os.PathLike):
        return load_image(value, shape), f"from the kernel: {Path(value).name}"
    if hasattr(value, "save") and hasattr(value, "mode"):  # a Pillow image
        buffer = io.BytesIO()
        value.save(buffer, "PNG")
        return load_image(buffer.getvalue(), shape), "from the kernel: a picture"
    array = np.asarray(value)
    if array.dtype == np.uint8:
        array = array / 255.0
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"an image must hold real numbers, not {array.dtype}")
    if array.shape == shape[1:] and shape[0] == 1:
        array = array[None]
    elif array.ndim == len(shape) + 1 and array.shape[0] == 1:
        array = array[0]
    if array.shape != shape:
        raise ValueError(f"the image has shape {array.shape}, the model takes {shape} (C, H, W)")
    if not np.all(np.isfinite(array)):
        raise ValueError("the image holds values that are not finite (NaN or infinity)")
    return np.ascontiguousarray(array, dtype=np.float32), "from the kernel: an array"


# -- the page's files ---------------------------------------------------------------------------
@cache
def page_assets() -> tuple[dict[str, str], str, str]:
    """The page's modules {name: source}, its CSS for a shadow root, and its body's markup."""
    modules = {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted((STATIC / "js").glob("*.js"))
        if path.name not in ("main.js", WIDGET_ESM.name)
    }
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    sheets = re.findall(r'<link rel="stylesheet" href="([^"]+)">', index)
    css = "\n".join((STATIC / sheet).read_text(encoding="utf-8") for sheet in sheets)
    # in a shadow root the page's document is the host: :root and body become it
    css = re.sub(r"(^|[\s,}])(?::root|body)(?=\s*[{,])", r"\1:host", css)
    css += "\n" + WIDGET_CSS.read_text(encoding="utf-8")
    body = re.search(r"<body[^>]*>(.*)</body>", index, re.DOTALL)
    if body is None:
        raise RuntimeError(f"{STATIC / 'index.html'} has no <body>")
    page = re.sub(r"<script\b.*?</script>", "", body[1], flags=re.DOTALL)
    return modules, css, page


# -- requests, answered by the app in this process ----------------------------------------------
def _request(content: dict[str, Any], buffers: Sequence[Any]) -> tuple[str, str, str, bytes, str]:
    """(method, path, query, body, content type) of a request message, checked; ValueError
    with a sentence for anything else."""
    method, target = content.get("method"), content.get("path")
    if method not in METHODS:
        raise ValueError(f"the method must be one of {sorted(METHODS)}, not {method!r}")
    if not isinstance(target, str):
        raise ValueError("'path' must be the API route, e.g. '/api/model'")
    path, _, query = target.partition("?")
    if not API_PATH.fullmatch(path) or ".." in path or not QUERY.fullmatch(query):
        raise ValueError(f"{target[:80]!r} is not an API route of the explainer")
    file = content.get("file")
    if file is not None:  # an upload: the file's bytes come as the message's buffer
        if not isinstance(file, dict) or len(buffers) != 1:
            raise ValueError("an upload needs 'file' {name, type} and its bytes as one buffer")
        data = bytes(buffers[0])
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"the file is larger than {MAX_MESSAGE_BYTES // 2**20} MB")
        return method, path, query, *_multipart(file, data)
    if "body" not in content or content["body"] is None:
        return method, path, query, b"", ""
    try:
        body = json.dumps(content["body"], allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"the body cannot be sent as JSON ({error})") from None
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"the body is larger than {MAX_MESSAGE_BYTES // 2**20} MB")
    return method, path, query, body, "application/json"


def _multipart(file: dict[str, Any], data: bytes) -> tuple[bytes, str]:
    """The form an upload's HTTP request carries: one field ``file``."""
    name = re.sub(r'[\x00-\x1f"\\]', "_", str(file.get("name") or "upload"))[:200]
    kind = str(file.get("type") or "application/octet-stream")
    if not re.fullmatch(r"[\w.+-]+/[\w.+-]+", kind):
        kind = "application/octet-stream"
    boundary = f"convlens-{os.urandom(12).hex()}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {kind}\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _outcome(done: Future) -> tuple[int, bytes | dict]:
    """The status and body of a finished request; a failure of the call itself as a 500."""
    try:
        return done.result()
    except Exception as error:  # answered, not raised: the comm stays up
        return 500, {"detail": f"the explainer failed: {type(error).__name__}: {error}"}


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    """The event loop every widget's app runs on: one thread for the process, started on
    first use (the kernel's own loop stays free; the routes' work runs on the app's threads)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = asyncio.new_event_loop()
            thread = threading.Thread(target=_LOOP.run_forever, name="convlens-widget", daemon=True)
            thread.start()
        return _LOOP


class InProcessApp:
    """An ASGI app called in this process, on :func:`event_loop`: the widget's requests go
    to the same routes ``convlens serve`` runs, without a server. The app's lifespan
    (startup, shutdown) runs as a server would run it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._loop = event_loop()
        self._closed = False
        self._shutdown: asyncio.Event | None = None
        self._started: Future = Future()
        self._lifespan = asyncio.run_coroutine_threadsafe(self._run_lifespan(), self._loop)
        self._started.result(timeout=60)
        _LIVE.add(self)

    async def _run_lifespan(self) -> None:
        self._shutdown = asyncio.Event()
        sent_startup = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_startup
            if not sent_startup:
                sent_startup = True
                return {"type": "lifespan.startup"}
            await self._shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"].startswith("lifespan.startup") and not self._started.done():
                if message["type"] == "lifespan.startup.failed":
                    self._started.set_exception(RuntimeError(message.get("message", "")))
                else:
                    self._started.set_result(None)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        try:
            await self.app(scope, receive, send)
        except Exception:  # an app without a lifespan: nothing to start
            pass
        finally:
            if not self._started.done():
                self._started.set_result(None)

    def submit(self, method: str, path: str, query: str, body: bytes, kind: str) -> Future:
        """Start one request; its future gives ``(status, body bytes)``."""
        if self._closed:
            closed: Future = Future()
            closed.set_result((503, b'{"detail": "this explainer was closed"}'))
            return closed
        return asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(self.call(method, path, query, body, kind), REQUEST_TIMEOUT),
            self._loop,
        )

    def request(self, method: str, path: str, body: Any = None, query: str = "") -> tuple[int, Any]:
        """One JSON request, waited for: ``(status, decoded JSON)`` (for tests and scripts)."""
        data = b"" if body is None else json.dumps(body).encode()
        kind = "application/json" if body is not None else ""
        status, answer = self.submit(method, path, query, data, kind).result()
        return status, json.loads(answer) if answer else None

    async def call(
        self, method: str, path: str, query: str, body: bytes, kind: str
    ) -> tuple[int, bytes]:
        headers = [(b"host", b"convlens-widget"), (b"content-length", str(len(body)).encode())]
        if kind:
            headers.append((b"content-type", kind.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("convlens-widget", 80),
        }
        answered = asyncio.Event()
        sent_body = False
        status, chunks = 500, []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()  # the client never goes away before the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answered.set()

        try:
            await self.app(scope, receive, send)
        except Exception as error:
            if not answered.is_set():  # the app failed before answering
                detail = f"the explainer failed: {type(error).__name__}: {error}"
                return 500, json.dumps({"detail": detail}).encode()
        return status, b"".join(chunks)

    def close(self) -> None:
        """End the app's training sessions and run its shutdown; later requests get 503."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        sessions = getattr(self.app.state, "sessions", None)
        if sessions is not None:
            sessions.close()
        if self._shutdown is not None:
            self._loop.call_soon_threadsafe(self._shutdown.set)
            try:
                self._lifespan.result(timeout=10)
            except Exception:  # closing anyway
                pass


#: Apps not closed yet: closed when the interpreter exits, so that their lifespans end.
_LIVE: weakref.WeakSet[InProcessApp] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for app in list(_LIVE):
        app.close()
