#!/usr/bin/python3
"""One PyTorch benchmark process, started by tests/bench/bench.lua (the other side is
surgft_worker.lua; both take the same arguments and print the same RESULT line).

  /usr/bin/python3 tests/bench/torch_worker.py --model=resnet20 --threads=2 --batch=128 \
      --modes=train,fwd,head --select=head=head. --layouts=nchw,nhwc --target=0.4 --samples=3

Modes: train (every parameter trains), fwd (forward only: eval mode, no_grad), fwd_bntrain
(forward only, no_grad, BatchNorm on batch statistics), or a name
given by --select=NAME=prefix1,prefix2 (a training step where only the parameters whose
names start with a prefix train; BatchNorm stays in train mode, like torch_freeze.py, unless
NAME ends in _bneval: then it uses its running statistics, the paper's protocol).
A training step is zero_grad, forward, cross-entropy, backward, SGD (lr 0.01, momentum
0.9) over the trainable parameters. Each (mode, layout) is warmed up, then timed in
`samples` runs of k steps (k chosen so a run lasts about `target` seconds).

The thread count is fixed before torch is imported: OpenBLAS and GNU OpenMP read their
environment when they load. OMP_WAIT_POLICY comes from the caller's environment.
Prints progress to stderr and one line `RESULT <json>` to stdout.
"""
import json
import os
import resource
import sys
import time


def parse_args(argv):
    o = {"model": None, "threads": 1, "batch": 128, "modes": "train,fwd", "layouts": "nchw", "target": 0.4,
         "samples": 3, "max_mode_s": 10.0, "seed": 0, "mem_steps": 0}
    select = {}
    for a in argv:
        if not a.startswith("--") or "=" not in a:
            sys.exit("torch_worker: bad argument '%s' (expected --key=value)" % a)
        k, v = a[2:].split("=", 1)
        k = k.replace("-", "_")
        if k == "select":
            name, prefixes = v.split("=", 1)
            select[name] = [p for p in prefixes.split(",") if p]
        elif k in o:
            o[k] = type(o[k])(v) if o[k] is not None else v
        else:
            sys.exit("torch_worker: unknown option --%s" % k)
    if not o["model"]:
        sys.exit("torch_worker: --model is required")
    o["select"] = select
    return o


O = parse_args(sys.argv[1:])
os.environ["OMP_NUM_THREADS"] = str(O["threads"])
os.environ["OPENBLAS_NUM_THREADS"] = str(O["threads"])
import torch  # noqa: E402  (after the thread environment)

torch.set_num_threads(O["threads"])
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import make_models, input_shape  # noqa: E402


def hwm_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def os_threads():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return None


def forward_macs(model, x):
    """Multiply-accumulates per image of one forward pass: convolutions, linear layers
    (per token) and the two attention matmuls (q k^T and a v: 2 T^2 D)."""
    nn = torch.nn
    total = [0]

    def hook(m, inp, out):
        n = out.shape[0]
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() // n * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += out.numel() // n * m.in_features
        elif type(m).__name__ == "Attention":
            t, d = inp[0].shape[1], inp[0].shape[2]
            total[0] += 2 * t * t * d
    hs = [m.register_forward_hook(hook) for m in model.modules()]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(x[:2])
    model.train(was)
    for h in hs:
        h.remove()
    return total[0]


def make_step(model, x, y, mode):
    """A closure running one step of `mode`, and the number of trainable tensors."""
    if mode in ("fwd", "fwd_bntrain"):
        # fwd_bntrain: BatchNorm on batch statistics (and moving its running ones), as in the
        # forward of a training step whose BatchNorm layers are in train mode
        model.train(mode == "fwd_bntrain")
        for p in model.parameters():
            p.requires_grad_(False)

        def fwd():
            with torch.no_grad():
                model(x)
        return fwd, 0
    model.train()
    prefixes = None if mode == "train" else O["select"][mode]
    params = []
    for name, p in model.named_parameters():
        on = prefixes is None or any(name.startswith(pre) for pre in prefixes)
        p.requires_grad_(on)
        if on:
            params.append(p)
    if not params:
        sys.exit("torch_worker: mode '%s' selects no parameter of %s" % (mode, O["model"]))
    if mode.endswith("_bneval"):
        model.eval()  # BatchNorm with its running statistics: the paper's fine-tuning protocol
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()

    def train():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
    return train, len(params)


def measure(step, batch):
    """Warm up, then `samples` timed runs of k steps; returns img/s per run and k."""
    t0 = time.perf_counter()
    step()
    per = time.perf_counter() - t0
    if per < O["target"]:  # the first step allocates and starts threads: time a second one
        t0 = time.perf_counter()
        step()
        per = time.perf_counter() - t0
    k = max(1, int(round(O["target"] / per)))
    ips, start, cpu0 = [], time.perf_counter(), time.process_time()
    for i in range(O["samples"]):
        t0 = time.perf_counter()
        for _ in range(k):
            step()
        ips.append(k * batch / (time.perf_counter() - t0))
        if i >= 1 and time.perf_counter() - start > O["max_mode_s"]:
            break
    # CPU seconds per wall second over the timed runs: about the thread count when the
    # threads are busy, above it when threads oversubscribe, below when they wait
    util = (time.process_time() - cpu0) / (time.perf_counter() - start)
    return ips, k, util


def bench_memory(name, batch, builders):
    """--mem-steps=N: peak resident memory over N full training steps, no timing."""
    model = builders[name]()
    x = torch.randn(*input_shape(name, batch))
    y = torch.randint(0, 10, (batch,))
    base = hwm_kb()
    step, _ = make_step(model, x, y, "train")
    per = []
    for _ in range(O["mem_steps"]):
        step()
        per.append(hwm_kb())
    sys.stderr.write("  torch memory %s t=%d: baseline %d MB, peak after each step %s MB\n" % (
        name, O["threads"], base // 1024, " ".join(str(v // 1024) for v in per)))
    return {"side": "torch", "memory": True, "model": name, "threads": O["threads"], "batch": batch,
            "steps": O["mem_steps"], "baseline_kb": base, "hwm_kb_per_step": per, "hwm_kb": hwm_kb(),
            "torch": torch.__version__}


def main():
    torch.manual_seed(O["seed"])
    name, batch = O["model"], O["batch"]
    builders = make_models(torch)
    if name not in builders:
        sys.exit("torch_worker: unknown model '%s' (valid: %s)" % (name, ", ".join(sorted(builders))))
    if O["mem_steps"] > 0:
        sys.stdout.write("RESULT " + json.dumps(bench_memory(name, batch, builders)) + "\n")
        return
    base = builders[name]()
    x0 = torch.randn(*input_shape(name, batch))
    y = torch.randint(0, 10, (batch,))
    out = {"side": "torch", "model": name, "threads": O["threads"], "batch": batch, "torch": torch.__version__,
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
           "macs_fwd": forward_macs(base, x0), "results": []}
    layouts = O["layouts"].split(",")
    models, inputs = {}, {}
    for lay in layouts:
        if lay == "nchw":
            models[lay], inputs[lay] = base, x0
        elif lay == "nhwc":  # channels_last: oneDNN's preferred layout for convolutions
            m = builders[name]()
            m.load_state_dict(base.state_dict())
            models[lay] = m.to(memory_format=torch.channels_last)
            inputs[lay] = x0.contiguous(memory_format=torch.channels_last)
        else:
            sys.exit("torch_worker: unknown layout '%s' (nchw, nhwc)" % lay)
    for mode in O["modes"].split(","):
        for lay in layouts:
            step, ntrain = make_step(models[lay], inputs[lay], y, mode)
            t0 = time.perf_counter()
            ips, k, util = measure(step, batch)
            r = {"mode": mode, "layout": lay, "samples": ips, "steps": k, "trainable": ntrain, "cpu_util": util,
                 "hwm_kb": hwm_kb()}
            out["results"].append(r)
            sys.stderr.write("  torch %s t=%d %s/%s: %s img/s (%.1f s)\n" % (
                name, O["threads"], mode, lay, " ".join("%.0f" % v for v in ips), time.perf_counter() - t0))
    out["hwm_kb"] = hwm_kb()
    out["os_threads"] = os_threads()
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


main()
