"""python -m utils.notebooks {sync,build,check}"""

import argparse
import sys

from utils.notebooks import pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.notebooks", description=__doc__)
    parser.add_argument("command", choices=["sync", "build", "check"],
                        help="sync: normalise learner notebooks; build: write solved/ and nbgrader/source/; "
                             "check: fail if a learner notebook is out of sync")
    args = parser.parse_args(argv)
    if args.command == "sync":
        for path in pipeline.sync_all():
            print(f"synced {path.relative_to(pipeline.ROOT)}")
    elif args.command == "build":
        for path in pipeline.build():
            print(f"wrote {path.relative_to(pipeline.ROOT)}")
    else:
        stale = [p for p in pipeline.learner_notebooks() if not pipeline.is_synced(p)]
        for path in stale:
            print(f"out of sync: {path.relative_to(pipeline.ROOT)} (run `python -m utils.notebooks sync`)")
        return 1 if stale else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
