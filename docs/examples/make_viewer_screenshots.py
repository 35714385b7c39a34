"""Write the README's viewer screenshots, docs/viewer-mlp.png and
docs/viewer-pandas.png: record the two example workloads, write their
pages with ``python -m mempool view`` and photograph them in headless
Chromium (apt-get install chromium).

    python docs/examples/make_viewer_screenshots.py [--width 1100]
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for name, script in (("mlp", "viewer_mlp.py"), ("pandas", "viewer_pandas.py")):
            # run from a scratch folder, so the page shows short paths
            shutil.copy(HERE / script, tmp)
            snap = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, script, snap.name], check=True, cwd=tmp)
            subprocess.run([sys.executable, "-m", "mempool", "view", str(snap),
                            "-o", str(Path(tmp) / f"{name}.html"), "--screenshot",
                            str(DOCS / f"viewer-{name}.png"), "--width", str(args.width)],
                           check=True)


if __name__ == "__main__":
    main()
