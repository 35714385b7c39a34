"""Without pyarrow nothing changes: ``import mempool`` (and the drop-in, the
stats, even ``import mempool.arrow``) imports neither pyarrow nor pandas.
Runs whether pyarrow is installed or not."""
from arrow_helpers import run_py


def test_import_mempool_imports_no_pyarrow():
    proc = run_py("""
        import sys, mempool, mempool.arrow, mempool.stats
        p = mempool.Pool(); a = p.zeros(1000); p.stats()
        mempool.install(); mempool.uninstall()
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'pandas')))
    """)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_run_arrow_without_pyarrow_says_what_to_install(monkeypatch, capsys):
    import mempool.arrow
    from mempool import cli
    monkeypatch.setattr(mempool.arrow._install, "available", lambda: False)
    assert cli.main(["run", "--arrow", "-c", "pass"]) == 2
    assert "pip install 'mempool[arrow]'" in capsys.readouterr().err


def test_memory_pool_rejects_what_is_not_a_pool():
    import pytest

    import mempool.arrow
    with pytest.raises(TypeError, match="expected a mempool.Pool"):
        mempool.arrow.memory_pool("default")
