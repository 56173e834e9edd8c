"""The explainer's web server: a FastAPI app over :mod:`convlens.explain`, plus the page.

Routes (all JSON; arrays as ``{"shape", "data"}`` base64 float32, see :func:`encode`):

``GET  /api/model``    the model's layers, shapes, classes and small parameters
``GET  /api/samples``  sample images with labels (from the bundled test split, or a folder)
``POST /api/trace``    every activation for an image; with ``target``, the backward pass too
``POST /api/explain``  the computation behind one value (forward, or its gradient)
``POST /api/upload``   a picture file, preprocessed to the model's input
``POST /api/sandbox``  a small convolution with chosen hyperparameters, run by the engine
``/api/training/...``  live training sessions on copies of the model (see :mod:`.training`)

Bad input gets a 4xx answer with a ``detail`` sentence; the server stays up. The model is
shared, so requests run one at a time through a lock (the layers keep per-call caches).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from convlens import nn
from convlens.data import ImageError, load_image
from convlens.explain import decode, describe, encode, explain_parameter, explain_value, trace
from convlens.explain.sandbox import sandbox
from convlens.train.session import DEFAULT_SAVE_DIR, Sessions

from .training import add_training_routes

MAX_UPLOAD_BYTES = 10 * 2**20
STATIC = Path(str(files("convlens.web") / "static"))


class ImageRequest(BaseModel):
    """An image given inline (``image``) or as the number of a sample (``sample``); with
    ``training``, computed with that training session's current weights."""

    image: dict[str, Any] | None = None
    sample: int | None = None
    target: int | None = None
    training: str | None = None


class ExplainRequest(ImageRequest):
    """One value of ``layer`` at ``index``: its output (no target), the gradient at its input
    (a target), or with ``parameter`` the gradient of that parameter's value at ``index``."""

    layer: int
    index: list[int]
    parameter: Literal["weight", "bias"] | None = None


class SandboxRequest(BaseModel):
    input_size: list[int] = Field(default=[7, 7], min_length=2, max_length=2)
    kernel_size: list[int] = Field(default=[3, 3], min_length=2, max_length=2)
    stride: list[int] = Field(default=[1, 1], min_length=2, max_length=2)
    dilation: list[int] = Field(default=[1, 1], min_length=2, max_length=2)
    padding: str | int | list[int] | list[list[int]] = 0
    anchor: list[int] | None = None
    mode: str = "correlation"
    #: the backward pass too: δ = 1 at one output cell [i, j], or "ones" everywhere
    delta: list[int] | Literal["ones"] | None = None


def create_app(
    model: nn.Sequential,
    samples: list[tuple[np.ndarray, str]] | None = None,
    save_dir: str | Path = DEFAULT_SAVE_DIR,
) -> FastAPI:
    """The explainer for ``model`` (with ``input_shape``), with ``(image, label)`` samples.

    Training sessions train copies of ``model`` and keep them as files in ``save_dir``.
    """
    description = describe(model)  # also checks that the model has an input shape
    samples = samples or []
    lock = threading.Lock()
    app = FastAPI(title="convlens explainer", docs_url="/api/docs", openapi_url="/api/openapi.json")
    sessions = app.state.sessions = Sessions(model, save_dir)

    @contextmanager
    def model_for(request: ImageRequest) -> Iterator[nn.Sequential]:
        """The served model, or a training session's current copy, held for this request."""
        if request.training is None:
            with lock:
                yield model
        else:
            with sessions.get(request.training).holding() as trained:
                yield trained

    def image_of(request: ImageRequest) -> np.ndarray:
        if request.sample is not None:
            if not 0 <= request.sample < len(samples):
                raise ValueError(f"sample {request.sample} does not exist ({len(samples)} samples)")
            return samples[request.sample][0]
        if request.image is None:
            raise ValueError("give an 'image' or a 'sample'")
        return decode(request.image)

    @app.exception_handler(ValueError)
    async def bad_input(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.get("/api/model")
    def get_model() -> dict[str, Any]:
        return {**description, "samples": len(samples)}

    @app.get("/api/samples")
    def get_samples() -> dict[str, Any]:
        return {
            "samples": [
                {"id": i, "label": label, "image": encode(image)}
                for i, (image, label) in enumerate(samples)
            ]
        }

    @app.post("/api/trace")
    def post_trace(request: ImageRequest) -> dict[str, Any]:
        image = image_of(request)
        with model_for(request) as chosen:
            return trace(chosen, image, request.target)

    @app.post("/api/explain")
    def post_explain(request: ExplainRequest) -> dict[str, Any]:
        image = image_of(request)
        with model_for(request) as chosen:
            if request.parameter is None:
                return explain_value(chosen, image, request.layer, request.index, request.target)
            if request.target is None:
                raise ValueError("a parameter's gradient needs a 'target' class for the loss")
            return explain_parameter(
                chosen, image, request.layer, request.parameter, request.index, request.target
            )

    @app.post("/api/upload")
    async def post_upload(file: UploadFile) -> dict[str, Any]:
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        try:
            image = load_image(data, tuple(model.input_shape))
        except ImageError as error:
            raise HTTPException(415, str(error)) from None
        return {"image": encode(image)}

    @app.post("/api/sandbox")
    def post_sandbox(request: SandboxRequest) -> dict[str, Any]:
        padding = request.padding
        if isinstance(padding, list):
            padding = tuple(tuple(p) if isinstance(p, list) else p for p in padding)
        H, W = request.input_size
        if not (1 <= H <= 32 and 1 <= W <= 32):
            raise ValueError(f"the sandbox input must be 1 to 32 pixels per side, got {H}x{W}")
        return sandbox(
            (H, W),
            tuple(request.kernel_size),
            tuple(request.stride),
            padding,
            tuple(request.dilation),
            None if request.anchor is None else tuple(request.anchor),
            request.mode,
            request.delta,
        )

    add_training_routes(app, sessions)

    @app.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def unknown_api(path: str) -> None:
        raise HTTPException(404, f"no API route /api/{path}")

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    return app
