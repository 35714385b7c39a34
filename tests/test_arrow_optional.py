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
