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
    parser.add_argument(
        "--hf", action="store_true", help="wikitext103 only: also a Hugging Face dataset saved to disk"
    )
    args = parser.parse_args()
    if args.hf and args.name != "wikitext103":
        parser.error("--hf applies to the wikitext103 fixture only")
    print(make(args.name, args.root))
    if args.hf:
        from ramda.fixtures.wikitext103 import make_hf

        print(make_hf(Path(args.root)))


if __name__ == "__main__":
    main()
