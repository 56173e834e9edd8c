"""The ``convlens`` command: ``info``, ``train``, ``evaluate``, ``serve`` and conversions.

Nothing heavy is imported here at module level: ``convlens --help`` and ``--version`` build
a parser that lists the commands only, and each command imports what it needs (NumPy, the
datasets, matplotlib for plots) when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__

#: The name of the shipped model wherever a command takes a model file: the same as
#: ``convlens.models.PRETRAINED``, written out so that the parser imports no NumPy.
PRETRAINED = "pretrained"

COMMANDS = {
    "info": "show a model's layers, shapes and parameter counts",
    "train": "train a preset or a model file on a dataset",
    "evaluate": "accuracy, loss and confusion matrix of a model on a dataset split",
    "serve": "open the explainer: see a trained network work on an image, layer by layer",
    "import-tfjs": "convert a TF.js layers-model (e.g. CNN Explainer's) to a model file",
    "import-onnx": "convert a sequential CNN saved as ONNX (e.g. by PyTorch) to a file",
    "export-onnx": "write a model as ONNX",
}
MODEL_HELP = (
    f"a model file (.safetensors model or checkpoint, TF.js model.json, .onnx), or "
    f"'{PRETRAINED}' for the shipped MNIST model"
)


def _info(args: argparse.Namespace) -> int:
    from .train import load_any_model

    model = load_any_model(args.model)
    print(args.model)
    if model.classes:
        print(f"classes: {', '.join(model.classes)}")
    dtypes = sorted({str(p.data.dtype) for p in model.parameters()}) or ["-"]
    print(f"dtype: {', '.join(dtypes)}\n")
    print(model.summary())
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    settings = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    result = train(
        TrainConfig(**settings),
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )

    if result.test is not None:
        test, n = result.test, result.test.confusion.sum()
        loss = f"{test.loss_name} loss {test.loss:.4f}"
        print(f"test accuracy {test.accuracy:.4f} ({loss}) on {n} images")
    print(f"wrote {result.out / 'model.safetensors'} and, beside it, history.json, curves.png, "
          "confusion.png and checkpoint.safetensors")  # fmt: skip
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .data import dataset_info, load_dataset
    from .train import evaluate, load_any_model, plot_confusion, trained_loss

    model = load_any_model(args.model)
    info = dataset_info(args.dataset)
    if model.input_shape is not None and tuple(model.input_shape) != info.input_shape:
        raise ValueError(
            f"{args.model} takes input {tuple(model.input_shape)}, "
            f"but {args.dataset} has {info.input_shape}"
        )
    x, y = load_dataset(args.dataset, args.split, progress=not args.quiet)
    result = evaluate(model, x, y, args.batch_size, args.loss or trained_loss(model))
    loss = f"{result.loss_name} loss {result.loss:.4f}"
    summary = f"accuracy {result.accuracy:.4f}, {loss}, {len(y)} images"
    print(f"{args.dataset} {args.split}: {summary}")
    print(f"  {'class':>12}  {'accuracy':>8}  {'images':>6}")
    counts = result.confusion.sum(axis=1)
    for name, accuracy, n in zip(info.classes, result.per_class_accuracy, counts, strict=True):
        print(f"  {name:>12}  {accuracy:>8.4f}  {n:>6}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        title = f"{args.dataset} {args.split}: {summary}"
        plot_confusion(result.confusion, info.classes, out / "confusion.png", title)
        report = {
            "model": str(args.model),
            "dataset": args.dataset,
            "split": args.split,
            "accuracy": result.accuracy,
            "loss": result.loss,
            "loss_function": result.loss_name,
            "per_class_accuracy": dict(
                zip(info.classes, result.per_class_accuracy.tolist(), strict=True)
            ),
            "confusion": result.confusion.tolist(),
        }
        (out / "evaluation.json").write_text(json.dumps(report, indent=2))
        print(f"wrote {out / 'confusion.png'} and {out / 'evaluation.json'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import socket
    import threading
    import webbrowser

    import uvicorn

    from .web.app import SETTINGS_VARIABLE, serving_app

    if not 1 <= args.workers <= 64:
        raise ValueError(f"--workers must be 1 to 64, got {args.workers}")
    folder = args.samples or _picture_folder_beside(args.model)
    settings = {
        "model": args.model,
        "classes": args.classes,
        "samples": None if folder is None else str(folder),
        "save_dir": args.save_dir,
        "workers": args.workers,
    }
    app = serving_app(**settings)  # with --workers, each process builds its own: fail here first
    with socket.socket() as probe:  # a busy port: one clear line instead of uvicorn's traceback
        try:
            probe.bind((args.host, args.port))
        except OSError as err:
            raise OSError(f"cannot listen on {args.host}:{args.port} ({err.strerror}); "
                          "try another --port") from None  # fmt: skip
    url = (  # the address it is bound to: "localhost" may resolve to ::1 first
        f"http://{'127.0.0.1' if args.host == '0.0.0.0' else args.host}:{args.port}/"
    )
    processes = f"; {args.workers} processes, live training off" if args.workers > 1 else ""
    print(f"convlens explainer: {url}  (model: {args.model or 'the pretrained MNIST net'}"
          f"{processes}; Ctrl-C stops it)")  # fmt: skip
    if not args.no_browser:
        threading.Timer(1.0, webbrowser.open, [url]).start()
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    del app
    model = args.model  # a file the worker processes find wherever they start; or a name
    if model is not None and Path(model).exists():
        model = str(Path(model).resolve())
    os.environ[SETTINGS_VARIABLE] = json.dumps({**settings, "model": model})
    uvicorn.run(
        "convlens.web.app:app_from_environment", factory=True, workers=args.workers,
        host=args.host, port=args.port, log_level="warning",
    )  # fmt: skip
    return 0


def _picture_folder_beside(model_path: str | None) -> Path | None:
    """An ``img`` or ``images`` folder next to the model file (CNN Explainer ships one)."""
    if model_path is None or (model_path == PRETRAINED and not Path(model_path).exists()):
        return None
    for name in ("img", "images"):
        folder = Path(model_path).parent / name
        if folder.is_dir():
            return folder
    return None


def _import_tfjs(args: argparse.Namespace) -> int:
    suffix = {"import-tfjs": ".json", "import-onnx": ".onnx"}[args.command]
    if not str(args.model_json).endswith(suffix):
        what = (
            "a TF.js layers-model's model.json (its weight shards beside it; CNN Explainer "
            "publishes model.json and group1-shard1of1.bin)"
            if suffix == ".json"
            else "an .onnx file"
        )
        raise ValueError(f"{args.command} reads {what}, not {args.model_json}")
    from .train import load_any_model

    model = load_any_model(args.model_json, args.classes)
    model.save(args.out, model.input_shape, model.classes, model.metadata)
    print(f"wrote {args.out}: {len(model)} layers, {sum(p.size for p in model.parameters()):,} "
          f"parameters, input {model.input_shape}")  # fmt: skip
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from .interop import export_onnx
    from .train import load_any_model

    model = load_any_model(args.model)
    export_onnx(model, args.out)
    print(f"wrote {args.out} (input 'input' (N, {', '.join(map(str, model.input_shape))}), "
          "output 'output')")  # fmt: skip
    return 0


def build_parser(commands_only: bool = False) -> argparse.ArgumentParser:
    """The ``convlens`` parser; ``commands_only`` lists the commands without their options.

    That light parser is what ``convlens --help`` and ``--version`` need, and it imports
    nothing: the full one reads the datasets, presets and training defaults.
    """
    parser = argparse.ArgumentParser(
        prog="convlens", description="Convolutional neural networks from the math up."
    )
    parser.add_argument("--version", action="version", version=f"convlens {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    if commands_only:
        for name, text in COMMANDS.items():
            commands.add_parser(name, help=text)
        return parser

    from .data import DATASETS
    from .models import PRESETS
    from .train import LOSSES, TrainConfig

    defaults = TrainConfig()
    info = commands.add_parser("info", help=COMMANDS["info"])
    info.add_argument("model", help=MODEL_HELP)
    info.set_defaults(run=_info)

    train = commands.add_parser(
        "train",
        help=COMMANDS["train"],
        description="Train with mini-batches, validate every epoch, checkpoint atomically, and "
        "write five files into --out: model.safetensors (the best validation epoch), "
        "history.json, curves.png, confusion.png (on the test split) and "
        "checkpoint.safetensors (for --resume).",
    )
    train.add_argument(
        "--model",
        default=defaults.model,
        help=f"a preset ({', '.join(PRESETS)}) or a model file (default: %(default)s)",
    )
    train.add_argument(
        "--dataset",
        default=defaults.dataset,
        metavar="NAME",
        help=f"one of {', '.join(DATASETS)} (default: %(default)s)",
    )
    train.add_argument("--epochs", type=int, default=defaults.epochs, help="(default: %(default)s)")
    train.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)"
    )
    train.add_argument(
        "--optimizer",
        default=defaults.optimizer,
        choices=("adam", "sgd"),
        help="(default: %(default)s)",
    )
    train.add_argument(
        "--loss",
        default=defaults.loss,
        choices=tuple(LOSSES),
        help="cross-entropy on the logits, or mse: MSE between their softmax and one-hot "
        "targets, as the backpropagation series trains first (default: %(default)s)",
    )
    train.add_argument(
        "--lr", type=float, default=defaults.lr, help="learning rate (default: %(default)s)"
    )
    train.add_argument(
        "--momentum",
        type=float,
        default=defaults.momentum,
        help="SGD momentum (default: %(default)s)",
    )
    train.add_argument(
        "--weight-decay", type=float, default=defaults.weight_decay, help="(default: %(default)s)"
    )
    train.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    train.add_argument(
        "--val-split",
        type=float,
        default=None,
        help="fraction of the training data held out for validation "
        "(default: the dataset's own validation split, else 0.1)",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: epochs without a better validation loss",
    )
    train.add_argument(
        "--limit", type=int, default=None, help="train on only the first N training examples"
    )
    train.add_argument(
        "--augment-shift",
        type=int,
        default=0,
        help="shift training images randomly by up to N pixels (default: %(default)s)",
    )
    train.add_argument(
        "--dtype",
        default=defaults.dtype,
        choices=("float32", "float64"),
        help="(default: %(default)s)",
    )
    train.add_argument("--out", default=defaults.out, help="output folder (default: %(default)s)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint, exactly (raise --epochs above "
        "the epochs it has done)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (without --resume or this, one is refused)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help=COMMANDS["evaluate"])
    evaluate.add_argument("model", help=MODEL_HELP)
    evaluate.add_argument(
        "--dataset",
        default=defaults.dataset,
        metavar="NAME",
        help=f"one of {', '.join(DATASETS)} (default: %(default)s)",
    )
    evaluate.add_argument("--split", default="test", help="(default: %(default)s)")
    evaluate.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    evaluate.add_argument(
        "--loss",
        default=None,
        choices=tuple(LOSSES),
        help="the loss to report (default: the one the model was trained with, from its "
        "metadata, else cross-entropy)",
    )
    evaluate.add_argument(
        "--out", default=None, help="folder for confusion.png and evaluation.json"
    )
    evaluate.add_argument("--quiet", action="store_true", help="no download progress bars")
    evaluate.set_defaults(run=_evaluate)

    serve = commands.add_parser(
        "serve",
        help=COMMANDS["serve"],
        description="Start the explainer's web server and open it in the browser.",
    )
    serve.add_argument(
        "--model",
        default=None,
        help=f"{MODEL_HELP} (default: {PRETRAINED})",
    )
    serve.add_argument(
        "--classes",
        default=None,
        help="class names: a text file (one per line) or a dataset name",
    )
    serve.add_argument("--samples", default=None,
                       help="a folder of pictures for the sample gallery "
                       "(default: an img/ folder beside the model file, else bundled MNIST "
                       "digits for 28x28 grey models)")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    serve.add_argument("--no-browser", action="store_true", help="do not open a browser")
    serve.add_argument("--save-dir", default=None,
                       help="where training sessions keep trained models "
                       "(default: ./convlens-models/)")  # fmt: skip
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes, for a class on one machine (default: 1); "
                       "with more than one, live training is off: a session lives in one "
                       "process")  # fmt: skip
    serve.set_defaults(run=_serve)

    tfjs = commands.add_parser("import-tfjs", help=COMMANDS["import-tfjs"])
    tfjs.add_argument("model_json", help="the model.json (its weight shards beside it)")
    tfjs.add_argument("--out", required=True, help="the .safetensors file to write")
    tfjs.add_argument("--classes", default=None,
                      help="class names: a text file (one per line) or a dataset name")  # fmt: skip
    tfjs.set_defaults(run=_import_tfjs)

    onnx_import = commands.add_parser("import-onnx", help=COMMANDS["import-onnx"])
    onnx_import.add_argument("model_json", metavar="model.onnx", help="the ONNX file")
    onnx_import.add_argument("--out", required=True, help="the .safetensors file to write")
    onnx_import.add_argument("--classes", default=None,
                             help="class names: a text file (one per line) or a dataset name "
                             "(default: those the file's metadata lists)")  # fmt: skip
    onnx_import.set_defaults(run=_import_tfjs)  # the same steps: load_any_model, then save

    onnx = commands.add_parser("export-onnx", help=COMMANDS["export-onnx"])
    onnx.add_argument("model", help=MODEL_HELP)
    onnx.add_argument("--out", required=True, help="the .onnx file to write")
    onnx.set_defaults(run=_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(commands_only=not any(arg in COMMANDS for arg in argv))
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # e.g. `convlens evaluate ... | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # Python flushes it at exit
        return 141
    except KeyboardInterrupt:
        print("convlens: interrupted (a training run continues with --resume)", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        print(f"convlens: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
