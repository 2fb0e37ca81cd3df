"""PyTorch on CPU, for scripts/bench: ms per training step of the MLPs engine-bench measures.

The same widths, batch, f32, ReLU, mean softmax cross-entropy and momentum SGD (lr 0.05,
momentum 0.9) as the worker's step; random inputs and labels; after two warm-up steps, the mean of
about a second's worth of steps (3 to 50), as engine-bench times its rows. Run twice: PyTorch's defaults, and with `torch.use_deterministic_algorithms
(True)`. Prints the rows of engine-bench's table (markdown).

    python torch_bench.py [--quick] [--threads N]

With `--serve` it prints no table: it reads requests from standard input, one per line,
`WIDTHS BATCH STEPS DETERMINISTIC` (widths comma-separated, or a graph's name, `lenet8`,
`lenet28` or `gpt`; deterministic 0 or 1), runs one
untimed step and then that many steps of that model (built and warmed up on first use) and
answers each with one line, the mean seconds per step of the timed ones. engine-bench's
head-to-head table (`--torch`) drives it, so that PyTorch's steps and ours take turns on the
same machine within seconds of each other.
"""

import argparse
import sys
import time

import torch

SIZES = [
    ("digits 64-32-10, batch 32", [64, 32, 10], 32),
    ("256-256-10, batch 64", [256, 256, 10], 64),
    ("784-512-512-10, batch 128", [784, 512, 512, 10], 128),
    ("1024-1024-1024-10, batch 256", [1024, 1024, 1024, 10], 256),
]


def step_flops(widths, batch):
    """The matrix products' FLOPs of one step, counted as engine::step_flops counts them."""
    total = 0
    for layer, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
        products = 2 if layer == 0 else 3
        total += 2 * batch * fan_in * fan_out * products
    return total


def cnn(name):
    """engine-bench's CNNs (its `cnns()`): the model and one input's shape."""
    nn = torch.nn
    if name == "lenet8":
        # TrainingSpec::example_cnn.
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), (1, 8, 8)
    if name == "lenet28":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10)), (1, 28, 28)
    raise ValueError(f"no CNN named {name}")


class Gpt(torch.nn.Module):
    """engine-bench's transformer (TrainingSpec::example_transformer on 86 characters,
    context 64): a token table and learned positions of 64; two blocks of a layer norm, q|k|v,
    causal attention of 4 heads and its projection, then a layer norm and an MLP of 256 with
    tanh-GELU, each residual; a final layer norm and the output layer."""

    def __init__(self, vocab=86, context=64, d=64, heads=4):
        super().__init__()
        nn = torch.nn
        self.context, self.d, self.heads = context, d, heads
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(context, d))
        self.blocks = nn.ModuleList([
            nn.ModuleList([nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d),
                           nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)])
            for _ in range(2)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, x):
        f = torch.nn.functional
        b, t, d, h = x.shape[0], self.context, self.d, self.heads
        y = self.tok(x) + self.pos
        for ln1, qkv, proj, ln2, fc, out in self.blocks:
            q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in qkv(ln1(y)).split(d, 2))
            a = f.scaled_dot_product_attention(q, k, v, is_causal=True)
            y = y + proj(a.transpose(1, 2).reshape(b, t, d))
            y = y + out(f.gelu(fc(ln2(y)), approximate="tanh"))
        return self.head(self.norm(y))


def make_step(widths, batch):
    """A training step of the MLP `widths` (or the CNN of that name) on a random batch of
    `batch`, as a function."""
    torch.manual_seed(1)
    if widths == "gpt":
        model = Gpt()
        tokens = torch.randint(0, 86, (batch, 65))
        x, target = tokens[:, :64], tokens[:, 1:]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            torch.nn.functional.cross_entropy(logits.reshape(-1, 86), target.reshape(-1)).backward()
            optimizer.step()

        return step
    if isinstance(widths, str):
        model, shape = cnn(widths)
        x = torch.rand(batch, *shape)
        classes = 10
    else:
        layers = []
        for fan_in, fan_out in zip(widths, widths[1:]):
            layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1])
        x = torch.rand(batch, widths[0])
        classes = widths[-1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    y = torch.randint(0, classes, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def bench(widths, batch):
    step = make_step(widths, batch)
    for _ in range(2):
        step()
    # As engine-bench times its rows: one timed step, then the mean of about a second's worth
    # (at least 3, at most 50): a few steps of tens of milliseconds vary by 2x on a shared VM.
    start = time.perf_counter()
    step()
    once = time.perf_counter() - start
    reps = int(min(max(1.0 / max(once, 1e-6), 3), 50))
    start = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - start) / reps


def serve():
    """Answers `WIDTHS BATCH STEPS DETERMINISTIC` lines with the mean seconds per step."""
    steps_by_model = {}
    for line in sys.stdin:
        widths, batch, steps, deterministic = line.split()
        if widths[0].isdigit():
            widths = [int(w) for w in widths.split(",")]
        batch, steps = int(batch), int(steps)
        torch.use_deterministic_algorithms(deterministic == "1")
        key = (tuple(widths) if isinstance(widths, list) else widths, batch, deterministic)
        if key not in steps_by_model:
            steps_by_model[key] = make_step(widths, batch)
            for _ in range(2):
                steps_by_model[key]()
        step = steps_by_model[key]
        # One untimed step first: after the other side's turn, caches and threads are cold
        # (engine-bench's turns do the same).
        step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        print(repr((time.perf_counter() - start) / steps), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.serve:
        serve()
        return
    sizes = SIZES[:2] if args.quick else SIZES
    threads = torch.get_num_threads()
    print("| model | implementation | threads | ms/step | steps/s | samples/s | GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for deterministic in (False, True):
        torch.use_deterministic_algorithms(deterministic)
        label = f"PyTorch {torch.__version__} f32" + (" deterministic" if deterministic else "")
        for name, widths, batch in sizes:
            seconds = bench(widths, batch)
            gflops = step_flops(widths, batch) / seconds / 1e9
            print(
                f"| {name} | {label} | {threads} | {seconds * 1e3:.2f} | {1 / seconds:.1f} "
                f"| {batch / seconds:.0f} | {gflops:.2f} |"
            )


if __name__ == "__main__":
    main()
