"""The demo's MLP training loop with its history recorded, for the viewer
(the README's docs/viewer-mlp.png).

    python docs/examples/viewer_mlp.py [OUT.json] [--steps 24]
    python -m mempool view OUT.json          # -> OUT.html

The network and the drifting batch size are the demo's
(mempool.tools.demo.workloads.MLP, seed 0): its weights and dataset live
throughout, each step's activations, gradients and temporaries come and go.
"""
import argparse

import mempool
from mempool import history
from mempool.tools.demo.workloads import MLP


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="mlp-history.json")
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args(argv)
    pool = mempool.Pool()
    with mempool.use(pool), history.record(pool, stacks=8):
        model = MLP(args.steps, seed=0)
        for i in range(args.steps):
            model.step(i)
        snap = pool.snapshot()
    snap.dump(args.out)
    print(f"{args.out}: {snap.summary()}")


if __name__ == "__main__":
    main()
