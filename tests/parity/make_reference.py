#!/usr/bin/python3
"""Reference outputs for tests/test_parity.lua: the same models built in PyTorch.

usage: make_reference.py OUTDIR

For each case (model x BatchNorm mode) writes OUTDIR/<case>.safetensors holding
  w.<name>   every parameter and BatchNorm running statistic, under OUR names
  input      the input batch;  target  the class ids, 1-based, as float32
  logits     the model output; loss     the mean cross-entropy (a scalar)
  g.<name>   the gradient of the loss for every parameter
  rs.<name>  the running statistics after the step (updated in train mode only)
  a.<path>   the output of every named submodule (to find the first layer that differs)
and in __metadata__ the model kind, its surgft options (JSON) and the mode.

The reference is computed in float64 from float32 weights and inputs, so it measures
our float32 error only. The safetensors format is written with json + struct (Python's
safetensors package is not a Debian package): an 8-byte little-endian header length,
the JSON header, then the raw little-endian data.
"""
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- the models, with module names equal to our parameter names ----

class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class PoolFC(nn.Module):
    """GAP + linear, optionally after BN + ReLU (the pre-activation head)."""

    def __init__(self, cin, classes, bn=False):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin) if bn else None
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        if self.bn is not None:
            x = torch.relu(self.bn(x))
        return self.fc(x.mean(dim=(2, 3)))


class SmallCNN(nn.Module):
    """surgft.models.cnn: conv3x3-BN-ReLU x3 (strides 1, 2, 2), GAP, linear."""

    def __init__(self, in_channels, widths, classes):
        super().__init__()
        cin = in_channels
        for i, w in enumerate(widths):
            self.add_module("block%d" % (i + 1), ConvBNReLU(cin, w, 1 if i == 0 else 2))
            cin = w
        self.head = PoolFC(cin, classes)
        self.nblocks = len(widths)

    def forward(self, x):
        for i in range(self.nblocks):
            x = getattr(self, "block%d" % (i + 1))(x)
        return self.head(x)


def norm_layer(kind, c):
    """BatchNorm, or GroupNorm with min(8, C) groups (surgft's gn_groups default)"""
    return nn.GroupNorm(min(8, c), c) if kind == "gn" else nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, norm="bn"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(norm, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:  # option B: 1x1 conv + norm
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm_layer(norm, cout))

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))


class PreActBlock(nn.Module):
    """o = relu(bn1(x)); conv2(relu(bn2(conv1(o)))) + (1x1 conv of o if the shape changes, else x)"""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        h = self.conv2(torch.relu(self.bn2(self.conv1(o))))
        return h + (x if self.shortcut is None else self.shortcut(o))


class Stem(nn.Module):
    def __init__(self, cin, cout, with_bn, norm="bn"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn = norm_layer(norm, cout) if with_bn else None

    def forward(self, x):
        x = self.conv(x)
        return torch.relu(self.bn(x)) if self.bn is not None else x


class CifarResNet(nn.Module):
    """surgft.models.resnet{depth = 6n+2, block = "basic" | "preact", norm = "bn" | "gn" (basic only here)}."""

    def __init__(self, depth, widths, classes, in_channels, block, norm):
        super().__init__()
        n = (depth - 2) // 6
        assert block == "basic" or norm == "bn"
        self.stem = Stem(in_channels, widths[0], block == "basic", norm)
        cin = widths[0]
        for s, w in enumerate(widths):
            blocks = []
            for i in range(n):
                stride = 2 if (i == 0 and s > 0) else 1
                blocks.append(BasicBlock(cin, w, stride, norm) if block == "basic" else PreActBlock(cin, w, stride))
                cin = w
            self.add_module("block%d" % (s + 1), nn.Sequential(*blocks))
        self.head = PoolFC(cin, classes, bn=(block == "preact"))

    def forward(self, x):
        x = self.stem(x)
        x = self.block3(self.block2(self.block1(x)))
        return self.head(x)


class PatchEmbed(nn.Module):
    def __init__(self, patch, cin, dim):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [N,T,D]


class Tokens(nn.Module):
    def __init__(self, t, dim):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, t + 1, dim))

    def forward(self, x):
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos


class Embed(nn.Module):
    def __init__(self, image, patch, cin, dim):
        super().__init__()
        self.patch = PatchEmbed(patch, cin, dim)
        self.tokens = Tokens((image // patch) ** 2, dim)

    def forward(self, x):
        return self.tokens(self.patch(x))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each [N,H,T,hd]
        a = torch.softmax(q @ k.transpose(-2, -1) / (d // h) ** 0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.act = nn.GELU()  # exact (erf)
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class VitHead(nn.Module):
    """LayerNorm over every token, then the class token, then the linear layer."""

    def __init__(self, dim, classes):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(self.norm(x)[:, 0])


class ViT(nn.Module):
    def __init__(self, image, patch, channels, dim, depth, heads, mlp_ratio, classes):
        super().__init__()
        self.embed = Embed(image, patch, channels, dim)
        self.depth = depth
        for i in range(depth):
            self.add_module("block%d" % (i + 1), Block(dim, heads, mlp_ratio))
        self.head = VitHead(dim, classes)

    def forward(self, x):
        x = self.embed(x)
        for i in range(self.depth):
            x = getattr(self, "block%d" % (i + 1))(x)
        return self.head(x)


def build(kind, o):
    if kind == "cnn":
        return SmallCNN(o["in_channels"], o["widths"], o["classes"])
    if kind == "resnet":
        return CifarResNet(o["depth"], o.get("widths", [16, 32, 64]), o.get("classes", 10),
                           o.get("in_channels", 3), o.get("block", "basic"), o.get("norm", "bn"))
    if kind == "vit":
        return ViT(o["image"], o["patch"], o["channels"], o["dim"], o["depth"], o["heads"],
                   o["mlp_ratio"], o["classes"])
    raise ValueError(kind)


# ---- cases: (file name, model kind, surgft options, mode, input shape[, label smoothing]) ----

CASES = []
for mode in ("train", "eval"):
    CASES.append(("cnn_" + mode, "cnn", {"in_channels": 1, "widths": [32, 64, 128], "classes": 10},
                  mode, [8, 1, 12, 12]))
    CASES.append(("resnet8_" + mode, "resnet", {"depth": 8, "block": "basic", "classes": 10},
                  mode, [8, 3, 16, 16]))
    CASES.append(("preact8_" + mode, "resnet", {"depth": 8, "block": "preact", "classes": 10},
                  mode, [8, 3, 16, 16]))
CASES.append(("resnet8_gn", "resnet", {"depth": 8, "block": "basic", "norm": "gn", "classes": 10},
              "train", [4, 3, 16, 16], 0.1))
CASES.append(("vit", "vit", {"image": 16, "patch": 4, "channels": 3, "dim": 32, "depth": 2, "heads": 4,
                             "mlp_ratio": 2, "classes": 5}, "train", [4, 3, 16, 16]))


def randomize(model, g):
    """Non-trivial norm affines and running statistics, so every term matters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            if isinstance(m, Tokens):
                m.cls.mul_(0.5)
                m.pos.mul_(0.5)


def state(model):
    """name -> tensor: parameters and running statistics (not num_batches_tracked)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = f32(tensors[name])
        data = struct.pack("<%df" % t.numel(), *t.flatten().tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fp:
        fp.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def run_case(outdir, name, kind, opts, mode, shape, smoothing=0.0, seed=0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1000)
    model = build(kind, opts)
    randomize(model, g)
    # float32 values, computed in float64
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.copy_(p.float())
    w0 = state(model)
    x = torch.randn(shape, generator=g)
    classes = opts["classes"]
    y = torch.randint(0, classes, (shape[0],), generator=g)
    model = model.double()
    model.train(mode == "train")

    acts = {}
    for path, m in model.named_modules():
        if path and "." not in path or isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm,
                                                      nn.GroupNorm, BasicBlock, PreActBlock, Block, Tokens, PatchEmbed,
                                                      Attention)):
            m.register_forward_hook(lambda mod, inp, out, path=path: acts.__setitem__(path, out.detach()))

    logits = model(x.double())
    loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
    model.zero_grad()
    loss.backward()

    out = {"input": x, "target": (y + 1).float(), "logits": logits, "loss": loss.reshape(())}
    for k, v in w0.items():
        out["w." + k] = v
    for k, p in model.named_parameters():
        out["g." + k] = p.grad
    for k, v in state(model).items():
        if "running_" in k:
            out["rs." + k] = v
    for k, v in acts.items():
        out["a." + k] = v
    meta = {"model": kind, "options": json.dumps(opts), "mode": mode, "label_smoothing": repr(smoothing),
            "torch": torch.__version__}
    write_safetensors(os.path.join(outdir, name + ".safetensors"), out, meta)
    return name


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_reference.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    names = [run_case(outdir, *case, seed=i) for i, case in enumerate(CASES)]
    print(" ".join(names))


if __name__ == "__main__":
    main()
