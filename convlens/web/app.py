"""The explainer's web server: a FastAPI app over :mod:`convlens.explain`, plus the page.

Routes (all JSON; arrays as ``{"shape", "data"}`` base64 float32, see :func:`encode`):

``GET  /api/model``    the model's layers, shapes, classes and small parameters
``GET  /api/samples``  sample images with labels (from the bundled test split, or a folder)
``POST /api/trace``    every activation for an image; with ``target``, the backward pass too
``POST /api/explain``  the computation behind one value (forward, or its gradient)
``POST /api/upload``   a picture file, preprocessed to the model's input
``POST /api/sandbox``  a small convolution with chosen hyperparameters, run by the engine

Bad input gets a 4xx answer with a ``detail`` sentence; the server stays up. The model is
shared, so requests run one at a time through a lock (the layers keep per-call caches).
"""

from __future__ import annotations

import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from convlens import nn
from convlens.data import ImageError, load_image
from convlens.explain import decode, describe, encode, explain_value, trace
from convlens.nn.conv import effective_kernel

MAX_UPLOAD_BYTES = 10 * 2**20
STATIC = Path(str(files("convlens.web") / "static"))


class ImageRequest(BaseModel):
    """An image given inline (``image``) or as the number of a sample (``sample``)."""

    image: dict[str, Any] | None = None
    sample: int | None = None
    target: int | None = None


class ExplainRequest(ImageRequest):
    layer: int
    index: list[int]


class SandboxRequest(BaseModel):
    input_size: list[int] = Field(default=[7, 7], min_length=2, max_length=2)
    kernel_size: list[int] = Field(default=[3, 3], min_length=2, max_length=2)
    stride: list[int] = Field(default=[1, 1], min_length=2, max_length=2)
    dilation: list[int] = Field(default=[1, 1], min_length=2, max_length=2)
    padding: str | int | list[int] | list[list[int]] = 0
    anchor: list[int] | None = None
    mode: str = "correlation"


def create_app(
    model: nn.Sequential, samples: list[tuple[np.ndarray, str]] | None = None
) -> FastAPI:
    """The explainer for ``model`` (with ``input_shape``), with ``(image, label)`` samples."""
    description = describe(model)  # also checks that the model has an input shape
    samples = samples or []
    lock = threading.Lock()
    app = FastAPI(title="convlens explainer", docs_url="/api/docs", openapi_url="/api/openapi.json")

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
        with lock:
            return trace(model, image, request.target)

    @app.post("/api/explain")
    def post_explain(request: ExplainRequest) -> dict[str, Any]:
        image = image_of(request)
        with lock:
            return explain_value(model, image, request.layer, request.index, request.target)

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
        return sandbox(request)

    @app.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def unknown_api(path: str) -> None:
        raise HTTPException(404, f"no API route /api/{path}")

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    return app


def sandbox(request: SandboxRequest) -> dict[str, Any]:
    """Run one convolution of a small numbered input with a numbered kernel, by the engine.

    Invalid settings raise the engine's own ValueError, which explains them.
    """
    H, W = request.input_size
    if not (1 <= H <= 32 and 1 <= W <= 32):
        raise ValueError(f"the sandbox input must be 1 to 32 pixels per side, got {H}x{W}")
    padding = request.padding
    if isinstance(padding, list):
        padding = tuple(tuple(p) if isinstance(p, list) else p for p in padding)
    anchor = None if request.anchor is None else tuple(request.anchor)
    conv = nn.Conv2D(
        1, 1, tuple(request.kernel_size), tuple(request.stride), padding,
        tuple(request.dilation), anchor, request.mode, bias=False,
    )  # fmt: skip
    kh, kw = conv.kernel_size
    # small integers so that every product can be checked by hand
    conv.weight.data = (np.arange(kh * kw) % 3 - 1).reshape(1, 1, kh, kw).astype(np.float32)
    x = ((np.arange(H * W) * 7) % 10).reshape(1, 1, H, W).astype(np.float32)
    y = conv.forward(x)
    return {
        "padding": [list(p) for p in conv.padding2d],
        "anchor": list(conv.anchor),
        "output_size": list(y.shape[2:]),
        "input": x[0, 0].tolist(),
        "kernel": conv.weight.data[0, 0].tolist(),
        "effective_kernel": effective_kernel(conv.weight.data, conv.mode)[0, 0].tolist(),
        "output": y[0, 0].tolist(),
    }
