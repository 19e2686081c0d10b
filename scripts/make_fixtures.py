"""Write a tiny data set in the real on-disk format: ``python scripts/make_fixtures.py imagenet data/fx``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramda.fixtures import FIXTURES, make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=FIXTURES)
    parser.add_argument("root", nargs="?", default="data/fixtures", help="output directory")
    args = parser.parse_args()
    print(make(args.name, args.root))


if __name__ == "__main__":
    main()
