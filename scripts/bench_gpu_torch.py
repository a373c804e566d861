"""PyTorch side of `weft bench gpu`: the same workloads on the same GPU, as JSON lines.

  python3 scripts/bench_gpu_torch.py matmul 1024,2048,4096,8192
  python3 scripts/bench_gpu_torch.py train 32,1024,8192 ROWS
  python3 scripts/bench_gpu_torch.py lenet 64,256 ROWS

matmul: fp32 `torch.matmul` of square matrices with TF32 disabled (plain fp32, as weft).
train: higgs-synthetic's 28-500-500-2 relu MLP, Adam lr 1e-3, cross-entropy, a plain eager
loop over shuffled batches of data already on the GPU; like weft, the loss is read back
every 16 steps (not every step). lenet: LeNet-5's shape on 1×28×28 images (conv 6@5×5 relu
→ max_pool 2 → conv 16@5×5 relu → max_pool 2 → 120 → 84 → 10, weft's `bench-lenet`), the
same loop. One warm-up pass, then one timed epoch.
Device: cuda if available, else cpu (to check the script, not to compare).
"""
import json
import sys
import time

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def matmul(sizes):
    for n in sizes:
        a = torch.randn(n, n, device=DEV)
        b = torch.randn(n, n, device=DEV)
        torch.matmul(a, b)
        sync()
        t = time.perf_counter()
        torch.matmul(a, b)
        sync()
        one = time.perf_counter() - t
        reps = max(3, min(50, int(0.5 / max(one, 1e-6))))
        t = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        sync()
        sec = time.perf_counter() - t
        print(json.dumps({"size": n, "gflops": 2 * n**3 * reps / sec / 1e9, "device": DEV}), flush=True)


def higgs():
    return torch.nn.Sequential(
        torch.nn.Linear(28, 500), torch.nn.ReLU(),
        torch.nn.Linear(500, 500), torch.nn.ReLU(),
        torch.nn.Linear(500, 2),
    )


def lenet():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def train(batches, rows, make, shape, classes):
    torch.manual_seed(0)
    x = torch.randn(rows, *shape, device=DEV)
    y = torch.randint(0, classes, (rows,), device=DEV)
    for batch in batches:
        model = make().to(DEV)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def epoch(limit):
            order = torch.randperm(rows, device=DEV)
            total = torch.zeros((), device=DEV)
            done = 0
            for i, start in enumerate(range(0, rows, batch)):
                if i >= limit:
                    break
                idx = order[start:start + batch]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                total += loss.detach() * idx.numel()
                done += idx.numel()
                if i % 16 == 15:
                    total.item()
            total.item()
            return done

        epoch(50)
        sync()
        t = time.perf_counter()
        done = epoch(10**9)
        sync()
        sec = time.perf_counter() - t
        print(json.dumps({"batch": batch, "samples_per_s": done / sec, "device": DEV}), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    sizes = [int(s) for s in sys.argv[2].split(",")]
    if mode == "matmul":
        matmul(sizes)
    elif mode in ("train", "higgs"):
        train(sizes, int(sys.argv[3]), higgs, (28,), 2)
    elif mode == "lenet":
        train(sizes, int(sys.argv[3]), lenet, (1, 28, 28), 10)
    else:
        sys.exit("usage: bench_gpu_torch.py matmul SIZES | higgs BATCHES ROWS | lenet BATCHES ROWS")
