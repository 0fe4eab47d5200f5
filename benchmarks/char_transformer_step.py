"""Measured wall-clock of one training step of `char_transformer` on the embedded corpus.

A step is what a data-parallel worker does per inner step: draw a batch of windows from its shard
(`sample_windows`), `FlatTrainer.loss_and_grad` (forward, mean next-token cross-entropy over all
positions, backward into the flat gradient) and an in-place AdamW update of the flat vector.
Reported: the median over `--steps` timed steps after `--warmup` untimed ones, for each layer
count, of wall-clock seconds and of this process's CPU seconds (`time.process_time`, which other
jobs on a shared machine inflate less than wall-clock), with the counted training FLOPs of the
step (matmul/attention only, see docs/costs.md). This is simulator speed on this machine, not a
modeled cost.

    python benchmarks/char_transformer_step.py --threads 1
    python benchmarks/char_transformer_step.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lowcomm import data, models
from lowcomm.core import torch_generator
from lowcomm.cost import count_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    corpus = data.python_docs()
    gen = torch_generator(0, purpose="bench-windows")
    print(f"{corpus.describe()}; batch {args.batch_size} x {args.seq_len}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"{'layers':>6} {'params':>9} {'train GFLOP':>11} {'wall s/step':>11} "
          f"{'CPU s/step':>10} {'GFLOP/wall s':>12}")
    for layers in args.layers:
        spec = models.char_transformer(corpus.vocab_size, seq_len=args.seq_len, layers=layers,
                                       width=args.width)
        model, params = models.init_params(spec, seed=0)
        trainer = model.trainer()
        trainer.bind(params)
        opt = torch.optim.AdamW([params], lr=1e-3)  # params is a leaf the trainer writes into
        flops = count_flops(spec.build, (args.batch_size, args.seq_len),
                            input_dtype=spec.input_dtype, kind="train")
        seconds, cpu_seconds = [], []
        for step in range(args.warmup + args.steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            x, y = data.sample_windows(corpus.train_ids, batch_size=args.batch_size,
                                       seq_len=args.seq_len, generator=gen)
            _, grad = trainer.loss_and_grad(x, y)
            params.grad = grad
            opt.step()
            if step >= args.warmup:
                seconds.append(time.perf_counter() - start)
                cpu_seconds.append(time.process_time() - cpu_start)
        median = statistics.median(seconds)
        print(f"{layers:>6} {params.numel():>9,} {flops / 1e9:>11.3f} {median:>11.4f} "
              f"{statistics.median(cpu_seconds):>10.4f} {flops / 1e9 / median:>12.1f}")


if __name__ == "__main__":
    main()
