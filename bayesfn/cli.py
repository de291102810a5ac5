"""The ``bayesfn`` command: ``tour`` and ``reproduce``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesfn", description="Function-space Bayesian deep learning and tractable densities."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tour = sub.add_parser("tour", help="fit every model on small built-in data; write a report")
    tour.add_argument("--out", default="bayesfn-tour", help="report folder (default: %(default)s)")
    tour.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    tour.add_argument("--seed", type=int, default=0)

    rep = sub.add_parser("reproduce", help="reproduce a paper's headline result")
    rep.add_argument("paper", nargs="?", help="which paper (see --list)")
    rep.add_argument("--list", action="store_true", help="list the available reproductions")
    size = rep.add_mutually_exclusive_group()
    size.add_argument(
        "--smoke",
        dest="scale",
        action="store_const",
        const="smoke",
        help="minutes-scale run for tests",
    )
    size.add_argument(
        "--full",
        dest="scale",
        action="store_const",
        const="full",
        help="the paper's scale (default)",
    )
    size.add_argument(
        "--scale",
        dest="scale",
        help="a named preset of the reproduction, e.g. 'cpu' for nngp (see its module)",
    )
    rep.set_defaults(scale="full")
    rep.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds")
    rep.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    rep.add_argument("--out", default=None, help="output folder (default: results/<paper>)")
    rep.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="instead of running, merge the results.json of runs split over processes",
    )
    return parser


def _reproduce(args: argparse.Namespace) -> int:
    from bayesfn import reproduce
    from bayesfn.reproduce.results import format_table, merge_results, write_results

    if args.list or args.paper is None:
        names = reproduce.available()
        if not names:
            print("no reproductions are registered yet")
        for name in names:
            print(f"{name:12s} {reproduce.load(name).PAPER}")
        return 0 if args.list else 2
    module = reproduce.load(args.paper)
    out = Path(args.out or Path("results") / args.paper)
    if args.merge:
        parts = []
        for folder in args.merge:
            path = Path(folder) / "results.json"
            if not path.exists():
                raise SystemExit(f"bayesfn reproduce --merge: {path} does not exist")
            parts.append(json.loads(path.read_text()))
        if any(p["paper"] != module.PAPER for p in parts):
            raise SystemExit(f"bayesfn reproduce --merge: not every part is a {args.paper} run")
        results = merge_results(parts, [str(f) for f in args.merge])
    else:
        results = module.run(scale=args.scale, seeds=args.seed, device=args.device, out=out)
    path = write_results(results, out)
    print(format_table(results))
    print(f"wrote {path} and {path.parent / 'report.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesfn`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "tour":
        from bayesfn.tour import run_tour

        report = run_tour(args.out, smoke=args.smoke, seed=args.seed)
        print(report.read_text())
        print(f"report written to {report.parent.resolve()}")
        failed = json.loads((report.parent / "results.json").read_text())["steps"]
        return 1 if any(s["status"] != "ok" for s in failed) else 0
    return _reproduce(args)


if __name__ == "__main__":
    sys.exit(main())
