"""What the README tells a user to run must work from a clone in any folder."""
import re
from pathlib import Path

from mempool.tools import bench
from mempool.tools.demo import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_names_no_path_outside_the_repository():
    # It named ../shared/external/run_numpy_suite.sh, which a clone does not have.
    outside = re.findall(r"(?:\.\./|/work/|/tmp/|/root/|/home/)\S*", README)
    assert outside == []


def test_demo_and_bench_options_in_the_readme_exist():
    for command, parser in (("demo", build_parser()), ("bench", bench.build_parser())):
        known = set(parser._option_string_actions)
        for line in re.findall(rf"mempool {command}((?: --?[\w-]+(?: [\w,.:-]+)?)+)", README):
            for option in re.findall(r"(?<![\w-])--[\w-]+", line):
                if command == "bench" and "--real" in line:
                    continue        # the real-library suite's own options
                assert option in known, (command, option, line)
