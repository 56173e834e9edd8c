"""The explainer's web server: a FastAPI app over :mod:`convlens.explain`, plus the page.

Routes (all JSON; arrays as ``{"shape", "data"}`` base64 float32, see :func:`encode`):

``GET  /api/model``    the model's layers, shapes, classes and small parameters
``GET  /api/samples``  sample images with labels (from the bundled test split, or a folder)
``POST /api/trace``    every activation for an image; with ``target``, the backward pass too
``POST /api/explain``  the computation behind one value (forward, or its gradient)
``POST /api/upload``   a picture file, preprocessed to the model's input
``POST /api/sandbox``  a small convolution with chosen hyperparameters, run by the engine
``/api/training/...``  live training sessions on copies of the model (see :mod:`.training`)

Bad input gets a 4xx answer whose ``detail`` is one sentence, never a 500, and the server
stays up: every request is validated whole (pydantic, bounded sizes) before anything is
allocated for it, bodies over a limit are refused unread (413), and an answer that would
hold NaN or infinity is refused with a sentence naming where (422).

Requests run in parallel: the engine's threads, one per core, each compute with a replica
of the served model (the same weight arrays, never written; caches and gradients of its
own), so that traces run on every core at once with the answers one request alone gets.
Answers are gzip-compressed for clients on other machines that accept it. ``convlens serve
--workers N`` runs N such processes (:func:`app_from_environment`); live training then is
off, since a session lives in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import re
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import pydantic_core
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convlens import nn
from convlens.data import ImageError, load_image
from convlens.explain import decode, describe, encode, explain_parameter, explain_value, trace
from convlens.explain.sandbox import sandbox
from convlens.train.session import DEFAULT_SAVE_DIR, Sessions

from .training import KeepRequest, StartRequest, StepRequest, UpdateRequest, add_training_routes

MAX_UPLOAD_BYTES = 10 * 2**20
#: A JSON body larger than this is refused unread (413); more where the model's input
#: image needs it (see :func:`json_body_limit`).
MAX_JSON_BYTES = 2**20
#: The sandbox's bounds: input pixels per side; kernel, stride and dilation per axis;
#: explicit padding per side; the padded input per side; multiply-adds of one pass.
SANDBOX_INPUT = 32
SANDBOX_SETTING = 32
SANDBOX_PADDING = 32
SANDBOX_PADDED = 128
SANDBOX_WORK = 2**22
#: Where `convlens serve --workers N` puts the settings for its worker processes (JSON).
SETTINGS_VARIABLE = "CONVLENS_SERVE_SETTINGS"
STATIC = Path(str(files("convlens.web") / "static"))
R = TypeVar("R")

#: An int that NumPy and every index computation take without overflowing.
Int = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Pair = Annotated[list[Int], Field(min_length=2, max_length=2)]
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class ArrayPayload(BaseModel):
    """An array as the page sends it: its ``shape`` and base64 little-endian float32 ``data``."""

    shape: list[Annotated[int, Field(ge=0, le=2**24)]] = Field(max_length=8)
    data: str


class ImageRequest(BaseModel):
    """An image given inline (``image``) or as the number of a sample (``sample``); with
    ``training``, computed with that training session's current weights."""

    image: ArrayPayload | None = None
    sample: Int | None = None
    target: Int | None = None
    training: str | None = Field(None, max_length=64)


class ExplainRequest(ImageRequest):
    """One value of ``layer`` at ``index``: its output (no target), the gradient at its input
    (a target), or with ``parameter`` the gradient of that parameter's value at ``index``."""

    layer: Int
    index: list[Int] = Field(max_length=8)
    parameter: Literal["weight", "bias"] | None = None


class SandboxRequest(BaseModel):
    """The sandbox's settings; the bounds keep every request small (see ``SANDBOX_*``)."""

    input_size: Pair = [7, 7]
    kernel_size: Pair = [3, 3]
    stride: Pair = [1, 1]
    dilation: Pair = [1, 1]
    padding: (
        Annotated[str, Field(max_length=16)]
        | Int
        | Pair
        | Annotated[list[Pair], Field(min_length=2, max_length=2)]
    ) = 0
    anchor: Pair | None = None
    mode: str = Field("correlation", max_length=32)
    #: the backward pass too: δ = 1 at one output cell [i, j], or "ones" everywhere
    delta: Pair | Literal["ones"] | None = None


#: For a field whose value may take several forms, what to say when it takes none of them.
FORMS = {
    "padding": "an int, [rows, columns], [[top, bottom], [left, right]], "
    "or 'valid', 'same' or 'full'",
    "delta": "'ones' or an output cell [i, j]",
    "image": "an array {'shape': [...], 'data': base64 float32}",
}


def create_app(
    model: nn.Sequential,
    samples: list[tuple[np.ndarray, str]] | None = None,
    save_dir: str | Path = DEFAULT_SAVE_DIR,
    workers: int = 1,
    threads: int | None = None,
) -> FastAPI:
    """The explainer for ``model`` (with ``input_shape``), with ``(image, label)`` samples.

    Training sessions train copies of ``model`` and keep them as files in ``save_dir``.
    ``workers`` is how many processes serve (``convlens serve --workers``): above 1, live
    training is off and its routes answer 503 with a sentence saying why. ``threads``
    requests compute at once, each on its own replica of the model (default: one per
    usable core); the others wait in line.
    """
    description = describe(model)  # also checks that the model has an input shape
    samples = samples or []
    input_shape = tuple(model.input_shape)
    app = FastAPI(title="convlens explainer", docs_url="/api/docs", openapi_url="/api/openapi.json")
    engine = app.state.engine = Engine(model, threads or usable_cores())
    weakref.finalize(app, engine.close)
    training = workers <= 1
    sessions = app.state.sessions = Sessions(model, save_dir) if training else None
    training_off = (
        f"live training is off on this server: it runs {workers} processes (convlens serve "
        f"--workers {workers}) and a training session lives in one; start it without "
        "--workers to train in the page"
    )

    def answer(request: ImageRequest, compute: Callable[[nn.Sequential], Any]) -> Response:
        """``compute`` run with this thread's replica of the served model, or with a
        training session's current copy; its result as JSON (on an engine thread)."""
        # an image too large for the model overflows: said in a sentence (finite_json)
        with np.errstate(over="ignore", invalid="ignore"):
            if request.training is None:
                result = compute(engine.replica())
            elif sessions is None:
                raise HTTPException(503, training_off)
            else:
                with sessions.get(request.training).holding() as trained:
                    result = compute(trained)
        return finite_json(result)

    def image_of(request: ImageRequest) -> np.ndarray:
        if request.sample is not None:
            if not 0 <= request.sample < len(samples):
                raise ValueError(f"sample {request.sample} does not exist ({len(samples)} samples)")
            return samples[request.sample][0]
        if request.image is None:
            raise ValueError("give an 'image' or a 'sample'")
        return checked_image(request.image, input_shape)

    @app.exception_handler(ValueError)
    async def bad_input(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_sentence(error)})

    @app.get("/api/model")
    def get_model() -> dict[str, Any]:
        return {**description, "samples": len(samples), "training": training}

    @app.get("/api/samples")
    def get_samples() -> dict[str, Any]:
        return {
            "samples": [
                {"id": i, "label": label, "image": encode(image)}
                for i, (image, label) in enumerate(samples)
            ]
        }

    @app.post("/api/trace", response_model=dict[str, Any])
    async def post_trace(request: ImageRequest) -> Response:
        def compute(chosen: nn.Sequential) -> dict[str, Any]:
            return trace(chosen, image_of(request), request.target)

        return await engine.run(answer, request, compute)

    @app.post("/api/explain", response_model=dict[str, Any])
    async def post_explain(request: ExplainRequest) -> Response:
        if request.parameter is not None and request.target is None:
            raise ValueError("a parameter's gradient needs a 'target' class for the loss")

        def compute(chosen: nn.Sequential) -> dict[str, Any]:
            image = image_of(request)
            if request.parameter is None:
                return explain_value(chosen, image, request.layer, request.index, request.target)
            return explain_parameter(
                chosen, image, request.layer, request.parameter, request.index, request.target
            )

        return await engine.run(answer, request, compute)

    @app.post("/api/upload")
    async def post_upload(file: UploadFile) -> dict[str, Any]:
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        try:
            image = await engine.run(load_image, data, input_shape)
        except ImageError as error:
            raise HTTPException(415, str(error)) from None
        return {"image": encode(image)}

    @app.post("/api/sandbox", response_model=dict[str, Any])
    async def post_sandbox(request: SandboxRequest) -> Response:
        padding = request.padding
        if isinstance(padding, list):
            padding = tuple(tuple(p) if isinstance(p, list) else p for p in padding)
        settings = (
            tuple(request.input_size),
            tuple(request.kernel_size),
            tuple(request.stride),
            padding,
            tuple(request.dilation),
            None if request.anchor is None else tuple(request.anchor),
            request.mode,
        )
        check_sandbox(*settings)
        return await engine.run(lambda: finite_json(sandbox(*settings, request.delta)))

    if sessions is not None:
        add_training_routes(app, sessions)
    else:

        @app.api_route(
            "/api/training{rest:path}", methods=["GET", "POST", "DELETE"], include_in_schema=False
        )
        def no_training(rest: str) -> None:
            raise HTTPException(503, training_off)

    @app.api_route(
        "/api/{path:path}",
        methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
        include_in_schema=False,
    )
    def unknown_api(path: str) -> None:
        raise HTTPException(404, f"no API route /api/{path}")

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    # the last one added runs first: refuse large bodies before anything else
    app.add_middleware(RemoteGZip)
    app.add_middleware(BodyLimit, json_limit=json_body_limit(input_shape))
    return app


# -- the threads that compute ----------------------------------------------------------------
class Engine:
    """The threads that compute answers, one per core, each with its own replica of the
    served model: the same weight arrays (never written here), its own caches and
    gradients. Requests beyond the threads wait in line, without holding a thread each;
    NumPy releases Python's lock in its loops and matrix products, so the threads really
    compute at once, and the engine's per-thread scratch buffers exist only this often."""

    def __init__(self, model: nn.Sequential, threads: int) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(max(1, threads), thread_name_prefix="convlens-engine")
        self._local = threading.local()

    def replica(self) -> nn.Sequential:
        """This engine thread's replica of the model (made on its first request)."""
        replica = getattr(self._local, "replica", None)
        if replica is None:
            replica = self._local.replica = self.model.replica()
        return replica

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """``function(*args)`` on an engine thread, awaited."""
        return await asyncio.wrap_future(self._executor.submit(function, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- checks at the edge ---------------------------------------------------------------------
def checked_image(payload: ArrayPayload, input_shape: tuple[int, ...]) -> np.ndarray:
    """The image in ``payload``; its data's length and its shape are checked against each
    other and against the model's input before anything is decoded."""
    data, shape = payload.data, tuple(payload.shape)
    if len(data) % 4 or not BASE64.fullmatch(data):
        raise ValueError("an array needs 'shape' and base64 'data': the image's data is not base64")
    size = len(data) // 4 * 3 - (len(data) - len(data.rstrip("=")))  # bytes, once decoded
    if size != 4 * math.prod(shape):
        held = f"{size // 4} float32 values" if size % 4 == 0 else f"{size} bytes"
        raise ValueError(f"array data holds {held}, shape {shape} needs {math.prod(shape)}")
    if shape != input_shape:
        raise ValueError(f"the image has shape {shape}, the model takes {input_shape}")
    return decode(payload.model_dump())


def check_sandbox(
    input_size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Any,
    dilation: tuple[int, int],
    anchor: tuple[int, int] | None,
    mode: str,
) -> None:
    """A ValueError with a sentence unless the sandbox's settings are in bounds and the work
    they imply (the padded input, the multiply-adds) is small."""
    H, W = input_size
    if not (1 <= H <= SANDBOX_INPUT and 1 <= W <= SANDBOX_INPUT):
        raise ValueError(
            f"the sandbox input must be 1 to {SANDBOX_INPUT} pixels per side, got {H}x{W}"
        )
    for name, pair in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
        if any(v > SANDBOX_SETTING for v in pair):  # below 1: the engine says why not
            raise ValueError(
                f"the sandbox's {name} must be at most {SANDBOX_SETTING} per axis, got {list(pair)}"
            )
    explicit = [padding] if isinstance(padding, int) else []
    if isinstance(padding, tuple):
        explicit = [v for p in padding for v in (p if isinstance(p, tuple) else (p,))]
    if not all(-SANDBOX_PADDING <= v <= SANDBOX_PADDING for v in explicit):
        raise ValueError(
            f"the sandbox's padding must be {-SANDBOX_PADDING} to {SANDBOX_PADDING} per side, "
            f"got {padding}"
        )
    # the engine's own reading of the settings (a 1-channel kernel of at most 32x32 values)
    conv = nn.Conv2D(1, 1, kernel_size, stride, padding, dilation, anchor, mode, bias=False)
    (top, bottom), (left, right) = conv.padding2d
    Hp, Wp = H + top + bottom, W + left + right
    if max(Hp, Wp) > SANDBOX_PADDED:
        raise ValueError(
            f"with this padding the input grows to {Hp}x{Wp}; the sandbox allows at most "
            f"{SANDBOX_PADDED} per side: use a smaller kernel, dilation or padding"
        )
    work = max(Hp, 1) * max(Wp, 1) * kernel_size[0] * kernel_size[1]
    if work > SANDBOX_WORK:
        raise ValueError(
            f"a {kernel_size[0]}x{kernel_size[1]} kernel over the {Hp}x{Wp} padded input takes "
            f"up to {work:,} multiply-adds; the sandbox allows {SANDBOX_WORK:,}: use a smaller "
            "kernel or input"
        )


def finite_json(result: dict[str, Any]) -> Response:
    """``result`` as a JSON answer, rendered here (on the engine thread) by pydantic's
    serializer, as FastAPI renders answers; a ValueError naming the first value that is NaN
    or infinite, which JSON cannot carry."""
    body = pydantic_core.to_json(result, inf_nan_mode="constants")
    if b"NaN" in body or b"Infinity" in body:  # also met by chance inside base64 data
        where, value = _first_non_finite(result)
        if where is not None:
            layer = re.fullmatch(r"layers\[(\d+)\]\.range.*", where)
            what = f"layer {layer[1]}'s output" if layer else f"'{where}'"
            raise ValueError(
                f"the answer is not a finite number: {what} is {value} — the image's values "
                "are too large for this model, or the model's weights are not finite"
            )
    return Response(body, media_type="application/json")


def _first_non_finite(value: Any, where: str = "") -> tuple[str, float] | tuple[None, None]:
    """The path (``layers[0].range[1]``) and value of the first NaN or infinity in ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    if isinstance(value, dict):
        items = [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        items = []
    for path, item in items:
        found = _first_non_finite(item, path)
        if found[0] is not None:
            return found
    return None, None


def validation_sentence(error: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one sentence naming the (first) bad field."""
    errors = list(error.errors())
    if not errors:
        return "the request is not valid"
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON{f' ({reason})' if reason else ''}"
    path = _field_path(first["loc"])
    if not path:
        if first["type"] == "missing":
            return "the request needs a JSON body"
        return f"the request body is not valid: {first['msg'][:1].lower()}{first['msg'][1:]}"
    field = path[0] + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
    same_field = [e for e in errors if _field_path(e["loc"])[:1] == path[:1]]
    top = path[0]
    if top in FORMS and len(same_field) > 1 and len(path) == 1:
        return f"'{top}' must be {FORMS[top]}"
    message = str(first["msg"])
    if first["type"] == "missing":
        sentence = f"'{field}' is required"
    elif message.startswith("Input should"):
        sentence = f"'{field}' should{message[len('Input should') :]}"
    else:
        sentence = f"'{field}' is not valid: {message[:1].lower()}{message[1:]}"
    if first["type"] in ("int_parsing", "int_type", "int_from_float") and "input" in first:
        sentence += f", got {json.dumps(first['input'])[:40]}"
    return sentence


def _field_path(loc: tuple[Any, ...]) -> list[Any]:
    """The parts of an error location that name fields and list items: it drops where the
    value came from ("body", "query", ...) and pydantic's names for the forms of a union."""
    path: list[Any] = []
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        if isinstance(part, int) or part in _FIELD_NAMES:
            path.append(part)
        else:
            break  # e.g. "list[int]", "function-after[...]": a form of a union
    return path


_REQUESTS = [ArrayPayload, ExplainRequest, SandboxRequest]
_REQUESTS += [StartRequest, StepRequest, UpdateRequest, KeepRequest]
_FIELD_NAMES = {"file", "session_id", "since"}.union(*(model.model_fields for model in _REQUESTS))


# -- compression ------------------------------------------------------------------------------
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class RemoteGZip:
    """gzip for clients on other machines that accept it (Starlette's GZipMiddleware, at
    level 1: a trace with its backward pass goes from 411 to 122–138 kB). A client on this
    machine gets answers as they are: there is no network to spare, and compressing costs
    more than sending (6 ms against 0.1 ms for that trace). Behind a reverse proxy on this
    machine, uvicorn takes the client from the proxy's X-Forwarded-For header, so students
    still get compressed answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        local = scope["type"] == "http" and client is not None and client[0] in LOOPBACK
        await (self.app if local else self.gzip)(scope, receive, send)


# -- request bodies -------------------------------------------------------------------------
def json_body_limit(input_shape: tuple[int, ...]) -> int:
    """The largest JSON body: 1 MB, or room for two of the model's input images in base64."""
    return max(MAX_JSON_BYTES, 2 * (4 * math.prod(input_shape) * 4 // 3) + 2**16)


class BodyLimit:
    """Refuse a request body over the limit with 413 before reading it (by its
    Content-Length), or as soon as it grows past it (a body sent in chunks). Uploads may
    carry one file of up to ``MAX_UPLOAD_BYTES``; everything else is JSON."""

    def __init__(self, app: ASGIApp, json_limit: int = MAX_JSON_BYTES) -> None:
        self.app, self.json_limit = app, json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"] == "/api/upload"
        limit = MAX_UPLOAD_BYTES + 2**16 if upload else self.json_limit
        what = (
            f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB"
            if upload
            else f"the request body is larger than {limit:,} bytes, this server's limit"
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status = 413 if declared.isdigit() else 400
            detail = what if status == 413 else "the Content-Length header is not a number"
            response = JSONResponse({"detail": detail}, status, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, what)
            return message

        await self.app(scope, counted, send)


# -- `convlens serve` -------------------------------------------------------------------------
def serving_app(
    model: str | None = None,
    classes: str | None = None,
    samples: str | None = None,
    save_dir: str | None = None,
    workers: int = 1,
) -> FastAPI:
    """The app `convlens serve` runs: ``model`` a model file (default: the shipped one),
    ``classes`` its class names, ``samples`` a folder of pictures (default: bundled digits
    for a model that takes them), ``save_dir`` where training keeps models."""
    from threadpoolctl import threadpool_limits

    from convlens.models import pretrained
    from convlens.train import load_any_model

    from .samples import bundled_samples, folder_samples

    # one request's matrix products are small: the engine's threads share the cores, and
    # BLAS threads of their own would only spin (measured: a third more CPU per request)
    threadpool_limits(1, user_api="blas")
    served = pretrained() if model is None else load_any_model(model, classes)
    if served.input_shape is None:
        raise ValueError(f"{model} has no input shape: save it with input_shape=(C, H, W)")
    gallery = folder_samples(samples, served) if samples else bundled_samples(served)
    return create_app(served, gallery, save_dir or DEFAULT_SAVE_DIR, workers)


def app_from_environment() -> FastAPI:
    """One worker process's app for ``convlens serve --workers N`` (a uvicorn factory): the
    settings of :func:`serving_app` come as JSON in ``$CONVLENS_SERVE_SETTINGS``."""
    settings = json.loads(os.environ.get(SETTINGS_VARIABLE, "{}"))
    with contextlib.redirect_stderr(io.StringIO()):  # notes were printed once, by the parent
        return serving_app(**settings)
