"""The routes of live training sessions: thin wrappers over :mod:`convlens.train.session`.

``POST   /api/training``               start a session on a copy of the served model (201)
``GET    /api/training``               what training can use here: datasets that fit, limits
``GET    /api/training/{id}``          its state: step, epoch, running, history, validation
``POST   /api/training/{id}/step``     ``{"steps": n}``: n more steps, now
``POST   /api/training/{id}/run``      train in the background until paused
``POST   /api/training/{id}/pause``    stop after the current step
``POST   /api/training/{id}/update``   how the last step changed one value (before, gradient, after)
``GET    /api/training/{id}/kernels``  the current small parameters of every layer (kernels)
``POST   /api/training/{id}/keep``     save the trained copy as a model file in the save folder
``DELETE /api/training/{id}``          end it and free its memory

Every route that answers with the state takes ``?since=k``: only the history and validation
after step k, so that a page which has the rest is not sent it again.

Unknown ids answer 404, one session too many 429, a value not yet stepped or a name
already taken 409, bad settings 422 — each with a ``detail`` sentence.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, create_model

from convlens.explain import encode
from convlens.explain.trace import INLINE_PARAMETER_LIMIT
from convlens.train.session import (
    NameTaken,
    NotStepped,
    SessionLimit,
    Sessions,
    SessionSettings,
    UnknownSession,
)

#: Steps one request may ask for.
MAX_STEPS = 1000
#: How each of the session module's refusals reaches the client.
STATUS = {UnknownSession: 404, SessionLimit: 429, NotStepped: 409, NameTaken: 409}


#: The body of ``POST /api/training``: the fields of :class:`SessionSettings`, checked by
#: pydantic for their types (and by ``SessionSettings.validate`` for their ranges).
StartRequest = create_model(
    "StartRequest",
    **{
        f.name: (get_type_hints(SessionSettings)[f.name], f.default)
        for f in fields(SessionSettings)
    },
)


class StepRequest(BaseModel):
    steps: int = 1


class UpdateRequest(BaseModel):
    layer: int
    parameter: str = "weight"
    index: list[int]


class KeepRequest(BaseModel):
    name: str | None = None


def add_training_routes(app: FastAPI, sessions: Sessions) -> None:
    """Serve the training session routes of ``sessions`` from ``app``; the session module's
    refusals (anywhere in the app, e.g. a ``training`` id on /api/trace) get their codes."""
    router = APIRouter(prefix="/api/training")

    @router.get("")
    def options() -> dict[str, Any]:
        return sessions.options()

    @router.post("", status_code=201)
    def start(request: StartRequest) -> dict[str, Any]:
        return sessions.start(SessionSettings(**request.model_dump())).state()

    @router.get("/{session_id}")
    def state(session_id: str, since: int | None = None) -> dict[str, Any]:
        return sessions.get(session_id).state(since)

    @router.post("/{session_id}/step")
    def step(
        session_id: str, request: StepRequest | None = None, since: int | None = None
    ) -> dict[str, Any]:
        steps = 1 if request is None else request.steps
        if not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be 1 to {MAX_STEPS}, got {steps}")
        return sessions.get(session_id).step(steps, since)

    @router.post("/{session_id}/run")
    def run(session_id: str, since: int | None = None) -> dict[str, Any]:
        return sessions.get(session_id).run(since)

    @router.post("/{session_id}/pause")
    def pause(session_id: str, since: int | None = None) -> dict[str, Any]:
        return sessions.get(session_id).pause(since)

    @router.post("/{session_id}/update")
    def update(session_id: str, request: UpdateRequest) -> dict[str, Any]:
        session = sessions.get(session_id)
        return session.update(request.layer, request.parameter, request.index)

    @router.get("/{session_id}/kernels")
    def kernels(session_id: str) -> dict[str, Any]:
        current = sessions.get(session_id).parameters()
        return {
            "step": current["step"],
            "layers": [
                {n: encode(a) for n, a in layer.items() if a.size <= INLINE_PARAMETER_LIMIT}
                for layer in current["layers"]
            ],
        }

    @router.post("/{session_id}/keep")
    def keep(session_id: str, request: KeepRequest | None = None) -> dict[str, str]:
        name = None if request is None else request.name
        return {"path": str(sessions.keep(session_id, name))}

    @router.delete("/{session_id}")
    def delete(session_id: str) -> dict[str, str]:
        return sessions.delete(session_id)

    async def refused(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(status_code=STATUS[type(error)], content={"detail": str(error)})

    for error in STATUS:
        app.add_exception_handler(error, refused)
    app.include_router(router)
