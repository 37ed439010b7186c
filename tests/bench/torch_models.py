#!/usr/bin/python3
"""The benchmark models in PyTorch, layer for layer the same as sf.models, under the same
parameter names (so surgical cases select the same tensors on both sides).

The CNN, the CIFAR ResNets (basic blocks, option-B shortcuts) and the tiny pre-LN ViT are
the parity test's reference models (tests/parity/make_reference.py, which test_parity
checks against sf.models to 1e-4), so the benchmark times the very architecture whose
numbers are verified; only the MLP 784-512-512-10 is defined here. The architectures are
those of the project's reference scripts (../shared/bench). Import after setting the
threads: importing this imports torch.
"""
import os
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
import make_reference as ref  # noqa: E402


def make_models(torch):
    nn = torch.nn

    def mlp():
        # flatten, fc1, act1, fc2, act2, head  (sf.models.mlp{sizes = {784, 512, 512, 10}})
        return nn.Sequential(OrderedDict([("flatten", nn.Flatten()),
                                          ("fc1", nn.Linear(784, 512)), ("act1", nn.ReLU()),
                                          ("fc2", nn.Linear(512, 512)), ("act2", nn.ReLU()),
                                          ("head", nn.Linear(512, 10))]))

    # the options are sf.models' (see tests/bench/surgft_worker.lua's build)
    return {
        "mlp": mlp,
        "cnn": lambda: ref.build("cnn", {"in_channels": 1, "widths": [32, 64, 128], "classes": 10}),
        "resnet8": lambda: ref.build("resnet", {"depth": 8}),
        "resnet20": lambda: ref.build("resnet", {"depth": 20}),
        "vit": lambda: ref.build("vit", {"image": 32, "patch": 4, "channels": 3, "dim": 64, "depth": 6, "heads": 4,
                                         "mlp_ratio": 2, "classes": 10}),
    }


def input_shape(name, batch):
    return (batch, 1, 28, 28) if name in ("mlp", "cnn") else (batch, 3, 32, 32)
