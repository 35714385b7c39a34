"""resolve_resident_limit: numbers, size strings, "auto" from fake cgroup
trees (v1 and v2) and the Dask worker's memory_limit, and bad input."""
import os

import pytest

from mempool import _limits
from mempool._limits import cgroup_memory_limit, resolve_resident_limit


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def v2(tmp_path):
    root = tmp_path / "cg"
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/user.slice/job\n")
    _write(root / "user.slice" / "job" / "memory.max", "max\n")
    _write(root / "user.slice" / "memory.max", str(3 << 30) + "\n")
    _write(root / "memory.max", "max\n")     # the root has none in real life either
    return str(root), str(proc)


@pytest.fixture
def v1(tmp_path):
    root = tmp_path / "cg"
    proc = tmp_path / "proc_cgroup"
    proc.write_text("12:cpu,cpuacct:/x\n9:memory:/docker/abc\n0::/\n")
    _write(root / "memory" / "docker" / "abc" / "memory.limit_in_bytes", str(512 << 20))
    _write(root / "memory" / "docker" / "memory.limit_in_bytes", str(1 << 30))
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712")
    return str(root), str(proc)


def test_v2_takes_the_tightest_ancestor(v2):
    root, proc = v2
    assert cgroup_memory_limit(root, proc) == 3 << 30
    assert resolve_resident_limit("auto", cgroup_root=root, proc_cgroup=proc) == 3 << 30
    _write(os.path.join(root, "user.slice", "job", "memory.max"), str(700 << 20))
    assert resolve_resident_limit("AUTO", cgroup_root=root, proc_cgroup=proc) == 700 << 20


def test_v1_memory_controller_and_unlimited_root(v1):
    root, proc = v1
    assert cgroup_memory_limit(root, proc) == 512 << 20
    os.remove(os.path.join(root, "memory", "docker", "abc", "memory.limit_in_bytes"))
    os.remove(os.path.join(root, "memory", "docker", "memory.limit_in_bytes"))
    assert cgroup_memory_limit(root, proc) is None      # 2**63-ish: no limit


def test_v1_in_a_container_reads_the_mount_root(tmp_path):
    # /proc/self/cgroup names a host path that does not exist inside the
    # container; the mount root is the container's cgroup.
    proc = tmp_path / "proc_cgroup"
    proc.write_text("4:memory:/kubepods/pod1/ctr\n")
    _write(tmp_path / "cg" / "memory" / "memory.limit_in_bytes", str(2 << 30))
    assert cgroup_memory_limit(str(tmp_path / "cg"), str(proc)) == 2 << 30


def test_no_cgroup_no_limit(tmp_path):
    assert cgroup_memory_limit(str(tmp_path / "none"), str(tmp_path / "missing")) is None
    assert resolve_resident_limit("auto", cgroup_root=str(tmp_path / "none"),
                                  proc_cgroup=str(tmp_path / "missing")) is None


def test_garbage_in_a_cgroup_file_is_skipped(v2):
    root, proc = v2
    _write(os.path.join(root, "user.slice", "memory.max"), "lots\n")
    assert cgroup_memory_limit(root, proc) is None


def test_auto_takes_the_smaller_of_cgroup_and_dask(v1, monkeypatch):
    root, proc = v1
    monkeypatch.setattr(_limits, "dask_memory_limit", lambda: 300 << 20)
    assert resolve_resident_limit("auto", cgroup_root=root, proc_cgroup=proc) == 300 << 20
    monkeypatch.setattr(_limits, "dask_memory_limit", lambda: 4 << 30)
    assert resolve_resident_limit("auto", cgroup_root=root, proc_cgroup=proc) == 512 << 20


def test_dask_memory_limit_outside_a_worker_is_none():
    assert _limits.dask_memory_limit() is None


@pytest.mark.parametrize("value, expected", [
    (None, None), (1, 1), (4096, 4096), ("512MiB", 512 << 20), ("2G", 2 << 30),
])
def test_explicit_values(value, expected):
    assert resolve_resident_limit(value) == expected


@pytest.mark.parametrize("value, error, text", [
    (-1, ValueError, "-1"), (0, ValueError, "got 0"), ("-5MiB", ValueError, "'-5MiB'"),
    ("lots", ValueError, "'lots'"), ("", ValueError, "''"), (1.5, TypeError, "1.5"),
    (True, TypeError, "True"), ([1], TypeError, r"\[1\]"),
])
def test_bad_values_are_named(value, error, text):
    with pytest.raises(error, match=text):
        resolve_resident_limit(value)
