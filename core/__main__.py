"""Command line of the Fjord core: ``python -m fjord.core COMMAND``.

  run [JOB.json]            run one job (default: read it from standard input) and report as
                            JSON lines; this is what the QGIS worker launcher calls
  environment [--json]      describe this interpreter's deep-learning stack
  synthetic FOLDER          write a synthetic glacier scene (image, classes, labels, front)
  train DATASET MODEL       train the phase-one CNN on a tile dataset (as fjord:trainphaseone)
  csc IMAGE MODEL OUTPUT    CNN-supervised classification of one image (as fjord:classifycsc)
  batchcsc JOBS SUMMARY     run a job table (as fjord:batchcsc; --scheduler local:N)
  trainunet DATASET MODEL   train a U-Net on a segmentation dataset (as fjord:trainunet)
  unet IMAGE MODEL OUTPUT   classify with a U-Net over blended windows (as fjord:classifyunet)
"""

import argparse
import json
import sys


def _train():
    from .learn.phase_one import train_phase_one
    return train_phase_one, ("dataset", "model")


def _csc():
    from .learn.csc import classify_csc
    return classify_csc, ("image", "model", "output")


def _batchcsc():
    from .run.batch import batch_csc
    return batch_csc, ("jobs", "summary")


def _trainunet():
    from .learn.unet import train_unet
    return train_unet, ("dataset", "model")


def _unet():
    from .learn.unet import classify_unet
    return classify_unet, ("image", "model", "output")


#: command -> the core function it runs and its positional arguments (imported on use: the
#: device must be chosen before an engine loads)
JOBS = {"train": _train, "csc": _csc, "batchcsc": _batchcsc, "trainunet": _trainunet, "unet": _unet}


def build_parser():
    """The command line's parser: one sub-command per job, options as the algorithms name them."""
    parser = argparse.ArgumentParser(prog="python -m fjord.core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a job description (JSON)")
    p_run.add_argument("job", nargs="?", default="-")
    p_env = sub.add_parser("environment", help="describe the deep-learning stack")
    p_env.add_argument("--json", action="store_true", help="print the report as JSON")
    p_syn = sub.add_parser("synthetic", help="write a synthetic glacier scene")
    p_syn.add_argument("folder")
    p_syn.add_argument("--seed", type=int, default=0)
    p_syn.add_argument("--rows", type=int, default=768)
    p_syn.add_argument("--cols", type=int, default=1024)
    p_train = sub.add_parser("train", help="train the phase-one CNN on a tile dataset")
    p_train.add_argument("dataset")
    p_train.add_argument("model")
    p_train.add_argument("--architecture", default="vgg16", choices=("vgg16", "compact"))
    p_train.add_argument("--epochs", type=int, default=120)
    p_train.add_argument("--batch-size", type=int, default=50)
    p_train.add_argument("--learning-rate", type=float, default=1e-4)
    p_train.add_argument("--target-accuracy", type=float, default=0.985)
    p_train.add_argument("--patience", type=int, default=20)
    p_train.add_argument("--target-metric", default="balanced_accuracy",
                         choices=("balanced_accuracy", "accuracy"))
    p_train.add_argument("--initial-model")
    p_train.add_argument("--class-weights", default="none", choices=("none", "balanced"))
    p_train.add_argument("--augment", default="none", choices=("none", "rotations", "rotations+flips"))
    p_train.add_argument("--mixed-precision", default="auto", choices=("auto", "on", "off"))
    p_train.add_argument("--device", default="auto")
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument("--report")
    p_csc = sub.add_parser("csc", help="CNN-supervised classification of one image")
    p_csc.add_argument("image")
    p_csc.add_argument("model")
    p_csc.add_argument("output")
    p_csc.add_argument("--patch-size", type=int, default=7)
    p_csc.add_argument("--validation")
    p_csc.add_argument("--output-phase-one")
    p_csc.add_argument("--output-probabilities")
    p_csc.add_argument("--phase-two-model")
    p_csc.add_argument("--report")
    p_batch = sub.add_parser("batchcsc", help="run a CSC job table")
    p_batch.add_argument("jobs")
    p_batch.add_argument("summary")
    p_batch.add_argument("--scheduler", default="",
                         help="empty: here; local:N: N worker processes on this machine; "
                              "tcp://host:8786: an existing Dask cluster")
    p_batch.add_argument("--fronts", help="the merged, dated front layer of the table (GeoPackage)")
    for p in (p_csc, p_batch):
        p.add_argument("--samples-per-class", type=int, default=500_000)
        p.add_argument("--max-epochs", type=int, default=300)
        p.add_argument("--smoothing", type=int, default=4)
        p.add_argument("--recognition-threshold", type=float, default=0.0)
        p.add_argument("--device", default="auto")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--ignore-scale-mismatch", action="store_true",
                       help="classify even when the image is not on the model's training scale")
    p_csc.add_argument("--patience", type=int, default=10)
    p_csc.add_argument("--tile-stride", type=int)
    p_tu = sub.add_parser("trainunet", help="train a U-Net on a segmentation dataset")
    p_tu.add_argument("dataset")
    p_tu.add_argument("model")
    p_tu.add_argument("--preset", default="none", choices=("none", "lulc", "glacier"))
    p_tu.add_argument("--depth", type=int, default=5)
    p_tu.add_argument("--filters", type=int, default=16)
    p_tu.add_argument("--dropout", type=float, default=0.0)
    p_tu.add_argument("--loss", default="crossentropy_dice",
                      choices=("crossentropy", "weighted_crossentropy", "dice", "crossentropy_dice"))
    p_tu.add_argument("--class-weights", default="none", choices=("none", "balanced"))
    p_tu.add_argument("--augment", default="rotations+flips+crops",
                      choices=("none", "rotations+flips", "rotations+flips+crops"))
    p_tu.add_argument("--epochs", type=int, default=30)
    p_tu.add_argument("--batch-size", type=int, default=8)
    p_tu.add_argument("--learning-rate", type=float, default=2e-3)
    p_tu.add_argument("--schedule", default="cosine", choices=("cosine", "constant"))
    p_tu.add_argument("--patience", type=int, default=0)
    p_tu.add_argument("--mixed-precision", default="auto", choices=("auto", "on", "off"))
    p_tu.add_argument("--initial-model")
    p_tu.add_argument("--report")
    p_tu.add_argument("--seed", type=int, default=0)
    p_unet = sub.add_parser("unet", help="classify with a U-Net over blended windows")
    p_unet.add_argument("image")
    p_unet.add_argument("model")
    p_unet.add_argument("output")
    p_unet.add_argument("--window", type=int, default=0)
    p_unet.add_argument("--overlap", type=int, default=-1)
    p_unet.add_argument("--blend", default="cosine", choices=("cosine", "linear", "none"))
    p_unet.add_argument("--tta", action="store_true")
    p_unet.add_argument("--probabilities", default="float32", choices=("float32", "byte", "none"))
    p_unet.add_argument("--ignore-scale-mismatch", action="store_true",
                        help="classify even when the image is not on the model's training scale")
    for p in (p_tu, p_unet):
        p.add_argument("--device", default="auto")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    if args.command == "run":
        from .run.worker import run_job
        return run_job(args.job)
    if args.command == "environment":
        from .environment import report, report_lines
        rep = report()
        print(json.dumps(rep, indent=2) if args.json else "\n".join(report_lines(rep)))
        return 0 if rep["ok"] else 1
    if args.command == "synthetic":
        from .prepare.synthetic import write_synthetic_scene
        paths = write_synthetic_scene(args.folder, shape=(args.rows, args.cols), seed=args.seed)
        print(json.dumps(paths, indent=2))
        return 0
    if args.command in JOBS:
        from .errors import FjordError

        func, positional = JOBS[args.command]()

        def say(fraction, message=None):
            if message:
                print(message, flush=True)
        options = {k: v for k, v in vars(args).items() if k != "command" and k not in positional}
        try:
            result = func(*[getattr(args, k) for k in positional], progress=say, **options)
        except FjordError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: v for k, v in result.items() if k not in ("history", "rows")},
                         indent=2, default=str))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
