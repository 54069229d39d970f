"""Puts MovieLens-100K (RecBole atomic files) under data/external/ml-100k for the benchmarks.

The RecBole 1.2.1 wheel on the package index ships the files under
recbole/dataset_example/ml-100k/; this script downloads that wheel with pip (no dependencies,
nothing installed) and extracts the three files. Only benchmarks use it: recfusion itself never
downloads data.

    python benchmarks/fetch_movielens.py [--dest data/external/ml-100k]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
INSIDE = "recbole/dataset_example/ml-100k/"


def fetch(dest: Path) -> Path:
    if all((dest / f).is_file() for f in FILES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
             "recbole==1.2.1"],
            check=True,
        )  # fmt: skip
        wheel = next(Path(tmp).glob("recbole-1.2.1-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in FILES:
                (dest / name).write_bytes(zf.read(INSIDE + name))
    return dest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, default=Path("data/external/ml-100k"))
    print(fetch(parser.parse_args().dest))
