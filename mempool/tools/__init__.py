"""Developer tools of mempool: benchmarks, replays and the real-library suite."""
