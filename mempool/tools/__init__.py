"""The tools around the allocator: the demo, the benchmarks (the real-library
suite included), trace replay and stress runs (``python -m mempool
demo|bench|replay|stress``).

They need the ``demo`` extra (``pip install 'mempool[demo]'``: rich,
matplotlib, psutil), and the real-library suite the ``real`` extra; the
snapshot viewer (``python -m mempool view``, :mod:`mempool.tools.view`) needs
only numpy.  The runtime package (``import mempool``) never imports this
subpackage.
"""
