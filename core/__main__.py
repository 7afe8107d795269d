"""Command line of the Fjord core: ``python -m fjord.core COMMAND``.

  run [JOB.json]            run one job (default: read it from standard input) and report as
                            JSON lines; this is what the QGIS worker launcher calls
  environment [--json]      describe this interpreter's deep-learning stack
  synthetic FOLDER          write a synthetic glacier scene (image, classes, labels, front)
  train DATASET MODEL       train the phase-one CNN on a tile dataset (as fjord:trainphaseone)
"""

import argparse
import json
import sys


def main(argv=None):
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
    p_train.add_argument("--initial-model")
    p_train.add_argument("--class-weights", default="none", choices=("none", "balanced"))
    p_train.add_argument("--augment", default="none", choices=("none", "rotations", "rotations+flips"))
    p_train.add_argument("--mixed-precision", default="auto", choices=("auto", "on", "off"))
    p_train.add_argument("--device", default="auto")
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument("--report")
    args = parser.parse_args(argv)

    if args.command == "run":
        from .worker import run_job
        return run_job(args.job)
    if args.command == "environment":
        from .environment import report, report_lines
        rep = report()
        print(json.dumps(rep, indent=2) if args.json else "\n".join(report_lines(rep)))
        return 0 if rep["ok"] else 1
    if args.command == "synthetic":
        from .synthetic import write_synthetic_scene
        paths = write_synthetic_scene(args.folder, shape=(args.rows, args.cols), seed=args.seed)
        print(json.dumps(paths, indent=2))
        return 0
    if args.command == "train":
        from .errors import FjordError
        from .train import train_phase_one

        def say(fraction, message=None):
            if message:
                print(message, flush=True)
        options = {k: v for k, v in vars(args).items() if k not in ("command", "dataset", "model")}
        try:
            result = train_phase_one(args.dataset, args.model, progress=say, **options)
        except FjordError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
