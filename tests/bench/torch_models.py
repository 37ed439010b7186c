#!/usr/bin/python3
"""The benchmark models in PyTorch, layer for layer the same as sf.models, under the same
parameter names (so surgical cases select the same tensors on both sides).

The architectures are those of the project's reference scripts (../shared/bench): MLP
784-512-512-10, the small CNN, CIFAR ResNet-(6n+2) with basic blocks and option-B
shortcuts, plus the tiny pre-LN ViT of sf.models.vit. Import after setting the threads.
"""
from collections import OrderedDict


def make_models(torch):
    nn = torch.nn

    def named(*pairs):
        return nn.Sequential(OrderedDict(pairs))

    def mlp():
        # flatten, fc1, act1, fc2, act2, head  (sf.models.mlp{sizes = {784, 512, 512, 10}})
        return named(("flatten", nn.Flatten()),
                     ("fc1", nn.Linear(784, 512)), ("act1", nn.ReLU()),
                     ("fc2", nn.Linear(512, 512)), ("act2", nn.ReLU()),
                     ("head", nn.Linear(512, 10)))

    def cnn():
        # blockI = conv3x3 (stride 1, 2, 2; no bias) + BN + ReLU; head = GAP + Linear
        blocks, cin = [], 1
        for i, w in enumerate((32, 64, 128)):
            blocks.append(("block%d" % (i + 1), named(
                ("conv", nn.Conv2d(cin, w, 3, 1 if i == 0 else 2, 1, bias=False)),
                ("bn", nn.BatchNorm2d(w)), ("relu", nn.ReLU()))))
            cin = w
        head = named(("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(cin, 10)))
        return named(*blocks, ("head", head))

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:  # option B: 1x1 conv projection + BN
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            o = torch.relu(self.bn1(self.conv1(x)))
            o = self.bn2(self.conv2(o))
            s = x if self.shortcut is None else self.shortcut(x)
            return torch.relu(o + s)

    def resnet(depth):
        n = (depth - 2) // 6
        parts = [("stem", named(("conv", nn.Conv2d(3, 16, 3, 1, 1, bias=False)),
                                ("bn", nn.BatchNorm2d(16)), ("relu", nn.ReLU())))]
        cin = 16
        for s, w in enumerate((16, 32, 64)):
            blocks = []
            for i in range(n):
                blocks.append((str(i), BasicBlock(cin, w, 2 if (i == 0 and s > 0) else 1)))
                cin = w
            parts.append(("block%d" % (s + 1), named(*blocks)))
        head = named(("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(cin, 10)))
        return named(*parts, ("head", head))

    # ---- the tiny ViT: sf.models.vit{image = 32, patch = 4, dim = 64, depth = 6, heads = 4,
    #      mlp_ratio = 2, classes = 10} ----

    class PatchEmbed(nn.Module):
        def __init__(self, patch, cin, dim):
            super().__init__()
            self.proj = nn.Conv2d(cin, dim, patch, patch)

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)  # [N,T,D]

    class Tokens(nn.Module):
        def __init__(self, t, dim):
            super().__init__()
            self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim))
            self.pos = nn.Parameter(0.02 * torch.randn(1, t + 1, dim))

        def forward(self, x):
            return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos

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
            a = torch.softmax(q @ k.transpose(-2, -1) * (d // h) ** -0.5, dim=-1)
            return self.proj((a @ v).transpose(1, 2).reshape(n, t, d))

    class Block(nn.Module):
        def __init__(self, dim, heads, mlp_ratio):
            super().__init__()
            hidden = int(dim * mlp_ratio)
            self.ln1 = nn.LayerNorm(dim)
            self.attn = Attention(dim, heads)
            self.ln2 = nn.LayerNorm(dim)
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()  # exact (erf), like sf.nn.GELU
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.fc2(self.act(self.fc1(self.ln2(x))))

    class SelectToken(nn.Module):
        def forward(self, x):
            return x[:, 0]

    def vit(image=32, patch=4, channels=3, dim=64, depth=6, heads=4, mlp_ratio=2, classes=10):
        embed = named(("patch", PatchEmbed(patch, channels, dim)), ("tokens", Tokens((image // patch) ** 2, dim)))
        blocks = [("block%d" % (i + 1), Block(dim, heads, mlp_ratio)) for i in range(depth)]
        head = named(("norm", nn.LayerNorm(dim)), ("cls", SelectToken()), ("fc", nn.Linear(dim, classes)))
        return named(("embed", embed), *blocks, ("head", head))

    return {
        "mlp": mlp,
        "cnn": cnn,
        "resnet8": lambda: resnet(8),
        "resnet20": lambda: resnet(20),
        "vit": vit,
    }


def input_shape(name, batch):
    return (batch, 1, 28, 28) if name in ("mlp", "cnn") else (batch, 3, 32, 32)
