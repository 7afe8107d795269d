"""Command line of the Fjord core: ``python -m fjord.core COMMAND``.

  run [JOB.json]            run one job (default: read it from standard input) and report as
                            JSON lines; this is what the QGIS worker launcher calls
  environment [--json]      describe this interpreter's deep-learning stack
  synthetic FOLDER          write a synthetic glacier scene (image, classes, labels, front)
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
    return 2


if __name__ == "__main__":
    sys.exit(main())
