"""The tools around the allocator: the demo, the benchmarks, trace replay and
stress runs (``python -m mempool demo|bench|replay|stress``).

They need the ``demo`` extra (``pip install 'mempool[demo]'``: rich,
matplotlib, psutil); the runtime package (``import mempool``) never imports
this subpackage.
"""
