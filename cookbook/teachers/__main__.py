"""``python -m cookbook.teachers build NAME [--seed S]`` and ``python -m cookbook.teachers list``."""

import argparse
import json

from cookbook import teachers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cookbook.teachers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="rerun a teacher's recipe and rewrite its asset")
    b.add_argument("name", choices=sorted(teachers.specs()))
    b.add_argument("--seed", type=int, default=0)
    sub.add_parser("list", help="registered teachers and their measured metric")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(json.dumps(teachers.build(args.name, seed=args.seed), indent=2))
    else:
        for name, spec in sorted(teachers.specs().items()):
            try:
                c = teachers.card(name)
                print(f"{name:16s} {spec.metric}={c['metrics'][spec.metric]}  {c['bytes'] / 1e6:.2f} MB  {spec.description}; labels: {spec.labels or 'not stated'}")
            except (FileNotFoundError, ValueError) as err:
                print(f"{name:16s} not built ({err})")


if __name__ == "__main__":
    main()
