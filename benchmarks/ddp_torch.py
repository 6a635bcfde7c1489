"""PyTorch DDP through `threadline.train.fit`: 1 vs 2 CPU workers (gloo), and a GPU (nccl) if present.

    python benchmarks/ddp_torch.py --quick      # a smoke run, under a minute on 2 cores
    python benchmarks/ddp_torch.py              # 300,000 rows x 20 features, 3 epochs, 3 repeats

An MLP (20 -> 128 -> 128 -> 2) trained with SGD + momentum on generated data, every `fit` in
full: the data in memory is sharded and spilled, each epoch is one round of rank tasks on a
warm local executor (opened once per configuration, its workers' torch import not timed), a
checkpoint is written into the run each epoch and the model is logged. Reported per
configuration: the median wall time of `fit`, the median epoch, test accuracy, and ratios:

1. CPU, gloo: 1 worker vs 2 workers (one torch thread each), and a plain single-process torch
   loop over the same data (the floor: what a loop with no executor, run or checkpoint costs).
2. When CUDA is available: the same model on 1 GPU, nccl, world size 1, against 1 CPU worker.

It needs only threadline's core dependencies and torch, and runs in a temporary Threadline home
(nothing is read from or written to the user's). Data is generated with NumPy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
from train_parallel import make_data, timed  # same data and timing as the other training benchmark


def model_for(args: argparse.Namespace, device: str) -> Any:
    from threadline.train import TorchModel

    return TorchModel("threadline.train.torch_nets:mlp",
                      params={"features": args.features, "classes": 2, "hidden": args.hidden, "layers": 2},
                      optimizer="sgd", lr=0.05, momentum=0.9, batch_size=args.batch_size, device=device)


def plain_loop(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> float:
    """Seconds of `epochs` passes of a bare torch loop in this process, one thread."""
    import torch

    from threadline.train.torch_nets import mlp

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = mlp(args.features, 2, args.hidden, layers=2)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        inputs, targets = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y)
        start = time.perf_counter()
        for epoch in range(args.epochs):
            order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(X)))
            for begin in range(0, len(X), args.batch_size):
                index = order[begin:begin + args.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(net(inputs[index]), targets[index]).backward()
                optimizer.step()
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def run_config(args: argparse.Namespace, store: Any, label: str, workers: int, device: str, data: Any,
               test: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    from threadline.compute import LocalExecutor
    from threadline.train import fit

    with LocalExecutor(workers=workers) as pool:
        warm = time.perf_counter()
        tiny = (data[0][:256 * workers], data[1][:256 * workers])
        fit(model_for(args, device), tiny, workers=workers, executor=pool, epochs=1, name="warm-up",
            store=store)
        warm = time.perf_counter() - warm
        seconds, result = timed(lambda: fit(model_for(args, device), data, workers=workers, executor=pool,
                                            epochs=args.epochs, seed=0, name=label, store=store),
                                args.repeats)
    epochs = [m.value for m in store.metric_history(result.run_id, "epoch_seconds")]
    accuracy = result.model.score(*test)
    print(f"{label:<28} fit {seconds:7.2f} s   epoch {statistics.median(epochs):6.2f} s   "
          f"accuracy {accuracy:.4f}   (pool start + torch import {warm:.1f} s)", flush=True)
    return {"seconds": seconds, "epoch": statistics.median(epochs), "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="60,000 rows, 2 epochs, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.repeats = 60_000, 2, 3
    home = tempfile.mkdtemp(prefix="tl-bench-ddp-")
    os.environ["THREADLINE_HOME"] = os.path.join(home, ".threadline")
    import torch

    from threadline.config import init_home
    from threadline.data.connect import connect
    from threadline.tracking import TrackingStore

    store = TrackingStore(connect(init_home()))
    data = make_data(args.rows, args.features, seed=0)
    test = make_data(20_000, args.features, seed=1)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, cuda: {torch.cuda.is_available()}; "
          f"{args.rows:,} rows x {args.features}, batch {args.batch_size} per worker, {args.epochs} epochs, "
          f"median of {args.repeats}", flush=True)
    floor, _ = timed(lambda: plain_loop(args, *data), args.repeats)
    print(f"{'plain torch loop, 1 thread':<28} fit {floor:7.2f} s", flush=True)
    one = run_config(args, store, "ddp cpu gloo, 1 worker", 1, "cpu", data, test)
    two = run_config(args, store, "ddp cpu gloo, 2 workers", 2, "cpu", data, test)
    print(f"2 workers vs 1: {one['seconds'] / two['seconds']:.2f}x faster "
          f"(epochs {one['epoch'] / two['epoch']:.2f}x); "
          f"1 worker vs the plain loop: {one['seconds'] / floor:.2f}x the time; "
          f"accuracy 2w - 1w: {100 * (two['accuracy'] - one['accuracy']):+.2f} points")
    if torch.cuda.is_available():
        gpu = run_config(args, store, "ddp cuda nccl, 1 GPU", 1, "cuda", data, test)
        print(f"1 GPU vs 1 CPU worker: {one['seconds'] / gpu['seconds']:.2f}x faster "
              f"(epochs {one['epoch'] / gpu['epoch']:.2f}x); "
              f"vs 2 CPU workers: {two['seconds'] / gpu['seconds']:.2f}x")
    else:
        print("no CUDA device: the GPU configurations were skipped")


if __name__ == "__main__":
    main()
