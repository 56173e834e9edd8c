"""Live training sessions: a copy of a model learning step by step while a page watches.

A :class:`TrainingSession` owns a *copy* of the served model (the served model never
changes), an optimizer, its data and, while it runs, a thread of its own. Every step is
kept as a record a learner can check by hand: for any one parameter value, its value
before the step, the batch-mean gradient the optimizer used, the optimizer's own terms
(momentum's velocity, Adam's m and v) and the value after, so that for plain SGD
``after = before − lr · gradient`` holds exactly as the engine computed it.

:class:`Sessions` keeps the live sessions of one server: at most :data:`SESSION_LIMIT`, each
dropped after :data:`IDLE_SECONDS` without a request, each training on a dataset that fits
the model (the bundled MNIST digits for the shipped model).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convlens import nn
from convlens.data import DATASETS, dataset_info, is_downloaded, load_dataset
from convlens.nn.sequential import from_file_contents

from .trainer import evaluate

#: Where ``keep`` writes trained copies unless the server names another folder.
DEFAULT_SAVE_DIR = "convlens-models"
#: Live sessions one server holds at most.
SESSION_LIMIT = 4
#: A session with no request for this long is ended.
IDLE_SECONDS = 15 * 60
#: Validation runs after every this many training images, rounded up to whole steps (50
#: steps at batch 32), and whenever training pauses ...
VALIDATE_EVERY_IMAGES = 1600
#: ... on at most this many held-out images: about a tenth of the time the training
#: images between two validations take (a training step costs about three forward passes).
#: Every 25 steps at batch 32, validation took a sixth of a session's time.
VALIDATION_IMAGES = 500
#: Largest batch a session accepts.
MAX_BATCH = 512
OPTIMIZERS = ("sgd", "adam")
#: A name ``keep`` accepts: a plain file name, no folders, not hidden.
FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


class UnknownSession(LookupError):
    """No live session has this id (never started, deleted or expired)."""


class SessionLimit(RuntimeError):
    """The server already holds as many sessions as it allows."""


class NotStepped(RuntimeError):
    """The session has taken no step yet, so no step can be explained."""


class NameTaken(FileExistsError):
    """``keep`` was asked for a file name that already exists in the save folder."""


@dataclass
class SessionSettings:
    """How a session trains (the body of ``POST /api/training``).

    Attributes
    ----------
    optimizer : {"sgd", "adam"}
    lr : float
        Learning rate η.
    momentum : float
        SGD's momentum μ (0: plain SGD); ignored by Adam.
    batch_size : int
    fresh : bool
        Start from new random weights drawn with ``seed`` instead of the loaded ones.
    seed : int
        Seeds the fresh weights, the order of the training examples and any Dropout's masks.
    dataset : str or None
        A dataset that fits the model; None: the one :meth:`Sessions.options` names.
    """

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 32
    fresh: bool = False
    seed: int = 0
    dataset: str | None = None

    def validate(self) -> SessionSettings:
        """Raise a ValueError naming the first bad setting."""
        optimizers = ", ".join(OPTIMIZERS)
        checks = [
            (self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {optimizers}"),
            (math.isfinite(self.lr) and 0 < self.lr <= 10, "lr", "must be above 0 and at most 10"),
            (0 <= self.momentum < 1, "momentum", "must be in [0, 1)"),
            (1 <= self.batch_size <= MAX_BATCH, "batch_size", f"must be 1 to {MAX_BATCH}"),
            (0 <= self.seed < 2**32, "seed", "must be 0 to 2**32 − 1"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)!r}")
        return self


def copy_model(model: nn.Sequential, fresh_seed: int | None = None) -> nn.Sequential:
    """A model with ``model``'s layers, input shape, classes and metadata, sharing nothing.

    With ``fresh_seed``, the parameters are new random ones (each layer's own
    initialisation) drawn from a generator seeded so; else copies of ``model``'s.
    """
    twin = from_file_contents(
        {name: array.copy() for name, array in model.tensors().items()},
        model.file_header(),
        "the served model",
    )
    if fresh_seed is None:
        return twin
    rng = np.random.default_rng(fresh_seed)
    layers = []
    for layer in twin.layers:
        accepts_rng = "rng" in inspect.signature(type(layer)).parameters
        layers.append(type(layer)(**layer.config(), **({"rng": rng} if accepts_rng else {})))
    fresh = nn.Sequential(*layers)
    fresh.input_shape, fresh.classes, fresh.metadata = twin.input_shape, twin.classes, twin.metadata
    return fresh


def _all_layers(model: nn.Sequential) -> Iterator[nn.Layer]:
    """Every layer, those inside nested ``Sequential`` s included, in order."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, nn.Sequential):
            yield from _all_layers(layer)


def fitting_datasets(model: nn.Sequential) -> list[str]:
    """Datasets whose images the model takes and whose classes it scores: the one it was
    trained on first (its metadata says), then the offline one, then the downloads."""
    if model.input_shape is None:
        return []
    outputs = model.output_shape(model.input_shape)
    fits = [
        name
        for name in DATASETS
        if dataset_info(name).input_shape == tuple(model.input_shape)
        and outputs == (len(dataset_info(name).classes),)
    ]
    trained_on = (model.metadata or {}).get("dataset")
    return sorted(fits, key=lambda name: name != trained_on)


@dataclass
class _Data:
    """A dataset's training examples and held-out images, as a session uses them."""

    name: str
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


class TrainingSession:
    """One copy of a model, its optimizer and data, trained a step at a time.

    Every public method is safe to call from any thread: steps, questions about them and
    requests that compute with the weights (:meth:`holding`) take turns on one lock.
    """

    def __init__(
        self, session_id: str, model: nn.Sequential, settings: SessionSettings, data: _Data
    ) -> None:
        self.id, self.settings, self.data = session_id, settings, data
        self.model = copy_model(model, settings.seed if settings.fresh else None)
        for i, layer in enumerate(_all_layers(self.model)):
            if isinstance(layer, nn.Dropout):  # its masks, too, repeat with the seed
                layer.rng = np.random.default_rng([settings.seed, i])
        self.model.metadata = {**self.model.metadata, "dataset": data.name}
        ends_with_softmax = bool(self.model.layers) and isinstance(self.model[-1], nn.Softmax)
        # the loss takes the class scores: before a final softmax, if there is one
        self.scored = nn.Sequential(*self.model.layers[: -1 if ends_with_softmax else None])
        dtype = self.model.parameters()[0].data.dtype
        self.x, self.x_val = data.x.astype(dtype, copy=False), data.x_val.astype(dtype, copy=False)
        params = self.scored.parameters()
        if settings.optimizer == "sgd":
            self.optimizer: nn.Optimizer = nn.SGD(params, settings.lr, momentum=settings.momentum)
        else:
            self.optimizer = nn.Adam(params, settings.lr)
        self.loss = nn.CrossEntropyLoss()
        self.rng = np.random.default_rng(settings.seed)
        self.order = self.rng.permutation(len(self.x))
        self.position = 0  # into self.order
        self.steps = 0
        self.batch_size = min(settings.batch_size, len(self.x))  # a batch is at most the data
        self.validate_every = -(-VALIDATE_EVERY_IMAGES // self.batch_size)  # steps, rounded up
        self.history: list[dict[str, float]] = []
        self.validation: list[dict[str, float]] = []
        self.error: str | None = None
        # what the last step started from, for explaining it: values and the optimizer's
        # state (its gradient stays in .grad: the next step writes the spare buffers)
        self._before = [np.empty_like(p.data) for p in params]
        self._spare_grads = [np.zeros_like(p.data) for p in params]  # see _swap_gradients
        self._state_before: dict[str, list[np.ndarray | None]] = {}
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None
        self.last_used = time.monotonic()
        self._validate()

    # -- training -------------------------------------------------------------------
    def step(self, steps: int = 1, since: int | None = None) -> dict[str, Any]:
        """Take ``steps`` optimizer steps now (others may interleave between them); the
        state after them (``since`` as in :meth:`state`)."""
        for _ in range(steps):
            with self._lock:
                if self.error is not None or not self._step():
                    break
        return self.state(since)

    def run(self, since: int | None = None) -> dict[str, Any]:
        """Keep training on a thread of the session's own until :meth:`pause`; the state
        (``since`` as in :meth:`state`)."""
        with self._lock:
            if self.error is None:
                self._running = True
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name=f"training-{self.id}", daemon=True
                    )
                    self._thread.start()
        return self.state(since)

    def pause(self, since: int | None = None) -> dict[str, Any]:
        """Stop training after the step under way; validate where it stopped; the state
        (``since`` as in :meth:`state`)."""
        with self._lock:
            self._running = False
            if self.steps and (not self.validation or self.validation[-1]["step"] != self.steps):
                self._validate()
        return self.state(since)

    def close(self) -> None:
        """Stop training and let the thread end (it holds no resources after that)."""
        with self._lock:
            self._running = False
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._running or self.error is not None or not self._step():
                    self._running, self._thread = False, None
                    return
            time.sleep(0)  # let waiting requests take the lock between steps

    def _step(self) -> bool:
        """One mini-batch step; False (and ``error`` set) if the loss stopped being finite."""
        if self.position + self.batch_size > len(self.order):  # an epoch is over: reshuffle
            self.order, self.position = self.rng.permutation(len(self.x)), 0
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        xb, yb = self.x[batch], self.data.y[batch]
        self.scored.train()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self._swap_gradients()  # this step writes into the spare buffers
            self.optimizer.zero_grad()
            loss, logits = self.scored.forward_backward(xb, yb, self.loss)
            if not math.isfinite(loss):
                self._swap_gradients()  # back to the last step's, which update() explains
                self.error = (
                    f"training stopped at step {self.steps + 1}: the loss became {loss}; "
                    f"start again with a smaller learning rate (now {self.settings.lr})"
                )
                return False
            self._remember()
            self.optimizer.step()
        self.steps += 1
        accuracy = float((logits.argmax(axis=1) == yb).mean())
        self.history.append({"step": self.steps, "loss": float(loss), "accuracy": accuracy})
        if self.steps % self.validate_every == 0:
            self._validate()
        return True

    def _swap_gradients(self) -> None:
        """Exchange each parameter's gradient buffer with its spare. A step computes its
        gradient before it knows whether the loss is finite (in one pass with the
        forward: :meth:`~convlens.nn.Sequential.forward_backward`), so it writes into the
        spare, and a step that fails swaps back: the last step's gradient stays as it was,
        for :meth:`update`, without a copy."""
        for k, p in enumerate(self.optimizer.params):
            p.grad, self._spare_grads[k] = self._spare_grads[k], p.grad

    def _remember(self) -> None:
        """Copy what the coming optimizer step overwrites, into the same arrays each step:
        the values and the optimizer's state. The gradient it uses is not copied: nothing
        writes it between the step and the next one's backward, which writes the spare
        (:meth:`_swap_gradients`)."""
        for p, before in zip(self.optimizer.params, self._before, strict=True):
            np.copyto(before, p.data)
        if isinstance(self.optimizer, nn.SGD):
            state = {"velocity": self.optimizer.velocity}
        else:
            state = {"m": self.optimizer.m, "v": self.optimizer.v}
        for name, arrays in state.items():
            kept = self._state_before.setdefault(name, [None] * len(arrays))
            for i, array in enumerate(arrays):
                if array is None or kept[i] is None or kept[i].shape != array.shape:
                    kept[i] = _copy(array)
                else:
                    np.copyto(kept[i], array)

    def _validate(self) -> None:
        n = VALIDATION_IMAGES
        result = evaluate(self.scored, self.x_val[:n], self.data.y_val[:n])
        self.validation.append(
            {"step": self.steps, "loss": float(result.loss), "accuracy": float(result.accuracy)}
        )

    # -- questions ----------------------------------------------------------------------
    def state(self, since: int | None = None) -> dict[str, Any]:
        """Where the session stands; ``since``: only history and validation after that step."""
        since = -1 if since is None else since
        with self._lock:
            return {
                "id": self.id,
                "step": self.steps,
                "epoch": self.steps * self.batch_size / len(self.x),
                "running": self._running,
                "history": self.history[max(since, 0) :],  # entry k is step k + 1
                "validation": [v for v in self.validation if v["step"] > since],
                "settings": asdict(self.settings),
                "dataset": self.data.name,
                "examples": len(self.x),
                "error": self.error,
            }

    def update(self, layer: int, parameter: str, index: list[int]) -> dict[str, Any]:
        """How the last step changed the value ``index`` of one layer's parameter.

        Returns ``before``, ``gradient`` (the batch-mean gradient the optimizer used),
        ``after`` and ``lr``, with the optimizer's own terms: momentum's ``velocity``
        (and ``velocity_before``), or Adam's ``m``, ``v`` (before and after), ``t``,
        the bias-corrected ``m_hat``, ``v_hat``, and its constants.
        """
        with self._lock:
            if self.steps == 0:
                raise NotStepped("no step has been taken yet: take one step first")
            k, at = self._locate(layer, parameter, index)
            p = self.optimizer.params[k]
            result: dict[str, Any] = {
                "layer": layer,
                "parameter": parameter,
                "index": list(at),
                "step": self.steps,
                "optimizer": self.settings.optimizer,
                "before": float(self._before[k][at]),
                "gradient": float(p.grad[at]),
                "after": float(p.data[at]),
                "lr": self.optimizer.lr,
                "weight_decay": 0.0,
            }
            if isinstance(self.optimizer, nn.SGD):
                velocity = self.optimizer.velocity[k]
                before = self._state_before["velocity"][k]
                result.update(
                    momentum=self.optimizer.momentum,
                    velocity_before=None if before is None else float(before[at]),
                    velocity=None if velocity is None else float(velocity[at]),
                )
            else:
                opt = self.optimizer
                (beta1, beta2), t = opt.betas, opt.t
                m, v = float(opt.m[k][at]), float(opt.v[k][at])
                result.update(
                    t=t,
                    beta1=beta1,
                    beta2=beta2,
                    eps=opt.eps,
                    m_before=float(self._state_before["m"][k][at]),
                    v_before=float(self._state_before["v"][k][at]),
                    m=m,
                    v=v,
                    m_hat=m / (1 - beta1**t),
                    v_hat=v / (1 - beta2**t),
                )
            return result

    def parameters(self) -> dict[str, Any]:
        """The current parameters: ``{"step", "layers": [{name: copy of the array}, ...]}``."""
        with self._lock:
            layers = [
                {name: p.data.copy() for name, p in layer.named_parameters()}
                for layer in self.model.layers
            ]
            return {"step": self.steps, "layers": layers}

    @contextmanager
    def holding(self) -> Iterator[nn.Sequential]:
        """The trained copy, with no step running while the caller computes with it."""
        with self._lock:
            yield self.model

    def keep(self, folder: str | os.PathLike, name: str | None = None) -> Path:
        """Save the trained copy as a model file in ``folder``; never overwrites a file.

        ``name`` must be a plain file name (letters, digits, ``-_.``); ``.safetensors`` is
        added when it has no suffix. Without a name a fresh one is chosen.
        """
        folder = Path(folder).resolve()
        if name is not None and (not FILE_NAME.fullmatch(name) or ".." in name):
            raise ValueError(
                f"name {name!r} is not a plain file name: use letters, digits, '-', '_' "
                "and '.', at most 100 characters, no folders"
            )
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            metadata = {
                "trained_with": {**asdict(self.settings), "dataset": self.data.name},
                "steps": self.steps,
            }
            chosen = name or f"{self.data.name}-{self.id}-step{self.steps}"
            path = folder / (chosen if Path(chosen).suffix else f"{chosen}.safetensors")
            draft = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
            self.model.save(draft, metadata=metadata)
        try:
            os.link(draft, path)  # unlike a rename, never replaces an existing file
        except FileExistsError:
            raise NameTaken(
                f"{path.name} already exists in the save folder: choose another name"
            ) from None
        finally:
            draft.unlink(missing_ok=True)
        return path

    def _locate(self, layer: int, parameter: str, index: list[int]) -> tuple[int, tuple[int, ...]]:
        """The optimizer's number for a layer's parameter, and the checked index into it."""
        if not 0 <= layer < len(self.model.layers):
            raise ValueError(
                f"layer {layer} does not exist: the model has {len(self.model.layers)} layers"
            )
        chosen = self.model.layers[layer]
        found = dict(chosen.named_parameters()).get(parameter)
        if found is None:
            raise ValueError(f"layer {layer}, {chosen!r}, has no {parameter!r}")
        shape = found.shape
        if len(index) != len(shape) or not all(
            0 <= i < n for i, n in zip(index, shape, strict=False)
        ):
            raise ValueError(
                f"index {list(index)} is outside layer {layer}'s {parameter} of shape {list(shape)}"
            )
        k = next(k for k, p in enumerate(self.optimizer.params) if p is found)
        return k, tuple(int(i) for i in index)


def _copy(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else array.copy()


class Sessions:
    """The live training sessions of one server, on copies of ``model``.

    Parameters
    ----------
    model : nn.Sequential
        The served model (never changed here).
    save_dir : path-like
        Where :meth:`TrainingSession.keep` writes.
    limit : int
        Live sessions at most; one more is a :class:`SessionLimit`.
    idle_seconds : float
        A session untouched this long is ended.
    """

    def __init__(
        self,
        model: nn.Sequential,
        save_dir: str | os.PathLike = DEFAULT_SAVE_DIR,
        limit: int = SESSION_LIMIT,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.model, self.save_dir = model, Path(save_dir)
        self.limit, self.idle_seconds = limit, idle_seconds
        self.fits = fitting_datasets(model)
        self._sessions: dict[str, TrainingSession] = {}
        self._data: dict[str, _Data] = {}  # loaded once, shared by the sessions
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    def options(self) -> dict[str, Any]:
        """What training can use here: the datasets that fit, the default, the limits, and
        when nothing fits a one-sentence ``message`` saying so."""
        offline = [name for name in self.fits if is_downloaded(name)]
        default = offline[0] if offline else None
        message = None
        if not self.fits:
            shape = "×".join(map(str, self.model.input_shape or ()))
            message = (
                f"Training is not available for this model: no known dataset has {shape} "
                f"images in {len(self.model.classes or [])} classes."
            )
        elif default is None:
            message = (
                f"Training needs the {self.fits[0]} dataset, which is not downloaded yet: "
                f"run 'convlens train --dataset {self.fits[0]}' once with a network."
            )
        with self._lock:
            active = len(self._sessions)
        return {
            "datasets": self.fits,
            "default": default,
            "message": message,
            "limit": self.limit,
            "active": active,
        }

    def start(self, settings: SessionSettings) -> TrainingSession:
        """A new session (not yet running) on a copy of the model."""
        settings.validate()
        self.expire()
        name = settings.dataset or self.options()["default"]
        if name is None:
            raise ValueError(self.options()["message"])
        if name not in self.fits:
            fits = ", ".join(self.fits) or "none"
            raise ValueError(
                f"dataset {name!r} does not fit this model (datasets that fit: {fits})"
            )
        with self._lock:
            if len(self._sessions) >= self.limit:
                raise SessionLimit(
                    f"this server already trains {self.limit} sessions, its limit: "
                    "delete one (or wait until an idle one expires) and try again"
                )
            session_id = secrets.token_urlsafe(8)
            self._sessions[session_id] = None  # type: ignore[assignment]  # holds the place
        try:
            session = TrainingSession(session_id, self.model, settings, self._dataset(name))
        except BaseException:
            with self._lock:
                del self._sessions[session_id]
            raise
        with self._lock:
            self._sessions[session_id] = session
        self._start_reaper()
        return session

    def get(self, session_id: str) -> TrainingSession:
        """The live session ``session_id``; marks it as used now."""
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSession(f"no training session {session_id!r}: it ended or never existed")
        session.last_used = time.monotonic()
        return session

    def delete(self, session_id: str) -> dict[str, str]:
        """End a session and free what it holds."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise UnknownSession(
                    f"no training session {session_id!r}: it ended or never existed"
                )
            del self._sessions[session_id]
        session.close()
        return {"deleted": session_id}

    def keep(self, session_id: str, name: str | None = None) -> Path:
        """Save session ``session_id``'s model into the save folder."""
        return self.get(session_id).keep(self.save_dir, name)

    def expire(self) -> list[str]:
        """End every session idle for longer than ``idle_seconds``; their ids."""
        now = time.monotonic()
        with self._lock:
            idle = [
                sid
                for sid, s in self._sessions.items()
                if s is not None and now - s.last_used > self.idle_seconds
            ]
        for sid in idle:
            try:
                self.delete(sid)
            except UnknownSession:
                pass  # deleted meanwhile
        return idle

    def close(self) -> None:
        """End every session."""
        with self._lock:
            ids = [sid for sid, s in self._sessions.items() if s is not None]
        for sid in ids:
            self.delete(sid)

    def _dataset(self, name: str) -> _Data:
        with self._lock:
            if name in self._data:
                return self._data[name]
        info = dataset_info(name)
        try:
            x, y = load_dataset(name, "train", progress=False)
            if "val" in info.splits:
                x_val, y_val = load_dataset(name, "val", progress=False)
            else:
                x_val, y_val = load_dataset(name, "test", progress=False)
        except (OSError, ConnectionError) as err:
            raise ValueError(f"dataset {name} could not be loaded: {err}") from None
        data = _Data(name, x, y, x_val, y_val)
        with self._lock:
            return self._data.setdefault(name, data)

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(target=self._reap, name="training-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while True:
            time.sleep(max(1.0, min(30.0, self.idle_seconds / 4)))
            self.expire()
