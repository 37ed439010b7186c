-- Composite blocks with named children: ResNet basic and pre-activation blocks, the
-- pre-LN transformer block. Parameter names follow PyTorch's (block1.0.conv1.weight).
return function(nn, sf)
  local K = sf.kernels
  local function norm_layer(kind, c, opts)
    if kind == "gn" then return nn.GroupNorm(math.min(opts.gn_groups or 8, c), c) end
    return nn.BatchNorm2d(c)
  end
  nn.norm_layer = norm_layer

  -- relu(norm(x)) through the children named norm and relu of self: one pass when the
  -- norm can take the ReLU in (BatchNorm) and fusion is not switched off
  -- (Module:set_fusion(false)); the norm's own output is then not kept (nil), the ReLU's is.
  -- Returns the output and whether it was fused (the backward then skips the ReLU's step).
  -- stats: x's row statistics from the convolution that wrote it (conv_stats), or nil.
  -- inplace: normalise x in place (the caller knows no backward will read it)
  local function norm_relu(self, norm, relu, x, stats, inplace)
    local C = self._children
    if not self._no_fusion and nn.fuses_relu(C[norm], C[relu]) then
      local h = self:call_child(norm, "forward", x, true, stats, inplace and x or nil)
      C[relu].output = h
      return h, true
    end
    return self:call_child(relu, "forward", self:call_child(norm, "forward", x, nil, stats)), false
  end
  nn.norm_relu = norm_relu

  -- the child conv's output of x, and its row statistics when the child norm after it
  -- uses batch statistics (nn.stats_for; nil otherwise, or with fusion off)
  local function conv_stats(self, conv, norm, x)
    local C = self._children
    if not self._no_fusion and nn.stats_for(C[conv], C[norm]) then return self:call_child(conv, "forward", x, true) end
    return self:call_child(conv, "forward", x), nil
  end
  nn.conv_stats = conv_stats

  -- Inference-only folding: a frozen block whose BatchNorms are in eval mode, with nothing
  -- trainable before it (Sequential sets _s_nofold on what a backward would pass through),
  -- runs each convolution with the BatchNorm after it folded in (Conv2d:forward_affine), so
  -- neither the BatchNorm pass nor the convolution's own output exists. Should a backward
  -- come anyway (an input gradient asked for), the block recomputes its forward unfolded
  -- first: folding changes speed, never results beyond rounding.
  local function foldable(self, norms)
    if not nn.no_backward(self) then return false end
    for _, m in ipairs(norms) do if not nn.eval_bn(m) then return false end end
    return true
  end

  -- a frozen block nothing trainable comes before: no backward will read its intermediate
  -- outputs (an unexpected one recomputes the forward first, see unfold_for_backward)
  function nn.no_backward(self)
    return not (self._no_fusion or self._s_nofold or self:has_trainable())
  end

  local function shortcut(cin, cout, stride, kind, opts, with_norm)
    if stride == 1 and cin == cout then return nil end
    local s = nn.Sequential()
    s:add("0", nn.Conv2d(cin, cout, 1, {stride = stride, bias = false, rng = opts.rng}))
    if with_norm then s:add("1", norm_layer(kind, cout, opts)) end
    return s
  end

  -- BasicBlock(cin, cout, stride[, {norm = "bn" | "gn", rng}]):
  -- out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut a 1x1 conv + norm
  -- when the shape changes (option B)
  local BasicBlock = nn.class("BasicBlock")
  nn.BasicBlock = BasicBlock
  function BasicBlock:init(cin, cout, stride, opts)
    opts = opts or {}
    local kind = opts.norm or "bn"
    self:add("conv1", nn.Conv2d(cin, cout, 3, {stride = stride, padding = 1, bias = false, rng = opts.rng}))
    self:add("bn1", norm_layer(kind, cout, opts))
    self:add("relu1", nn.ReLU())
    self:add("conv2", nn.Conv2d(cout, cout, 3, {padding = 1, bias = false, rng = opts.rng}))
    self:add("bn2", norm_layer(kind, cout, opts))
    local sc = shortcut(cin, cout, stride, kind, opts, true)
    if sc then self:add("shortcut", sc) end
    self:add("relu", nn.ReLU())
  end

  function BasicBlock:forward(x)
    nn.ensure_built(self)
    local C = self._children
    self._s_folded = nil
    local sc = C.shortcut and C.shortcut._children
    if foldable(self, {C.bn1, C.bn2, sc and sc["1"] or nil}) and (not sc or (sc["1"] and #C.shortcut._children == 2)) then
      local a1, b1 = C.bn1:eval_affine()
      local h = C.conv1:forward_affine(x, a1, b1, true)
      C.relu1.output = h
      local a2, b2 = C.bn2:eval_affine()
      h = C.conv2:forward_affine(h, a2, b2, true, sc and sc["0"]:forward_affine(x, sc["1"]:eval_affine()) or x)
      C.relu.output = h
      self._s_folded = true
      self.output = h
      return h
    end
    -- BatchNorm on batch statistics in a block no backward will pass through: each norm
    -- writes over its convolution's output (one fresh activation less per norm; the
    -- convolution's output is what a backward would have needed)
    local inplace = nn.no_backward(self) and not self._no_fusion
    local h, st
    h, st = conv_stats(self, "conv1", "bn1", x)
    h, self._s_fused = norm_relu(self, "bn1", "relu1", h, st, inplace)
    h, st = conv_stats(self, "conv2", "bn2", h)
    if inplace then
      -- the convolutions' outputs are overwritten: like folded layers, they keep none
      self._s_folded = true
      C.conv1.output, C.conv2.output = nil, nil
    end
    local s = self._children.shortcut and self:call_child("shortcut", "forward", x) or x
    if not self._no_fusion and C.bn2.fuses_add_relu and C.bn2:fuses_add_relu() then
      -- bn2, the sum and the ReLU in one pass (bn2's backward needs its input, not its output)
      h = self:call_child("bn2", "forward", h, true, st, inplace and h or nil, s)
      C.relu.output = h
      self.output = h
      return h
    end
    h = self:call_child("bn2", "forward", h, nil, st, inplace and h or nil)
    if self._no_fusion then
      self._s_sum = h + s
      self.output = self:call_child("relu", "forward", self._s_sum)
    else
      -- the sum is only needed through its ReLU: it is formed and rectified in place in
      -- bn2's output, which nothing else needs (bn2's backward needs its input)
      K.add_relu_forward(h, s, h)
      C.relu.output, C.bn2.output = h, nil
      self.output = h
    end
    return self.output
  end

  function BasicBlock:backward(x, g, need)
    if need == false and not self:has_trainable() then self.gradInput = nil; return nil end
    self:unfold_for_backward(x)
    local C = self._children
    local gs = self:call_child("relu", "backward", self._s_sum, g, true)
    local steps = {{"conv1", x}, {"bn1", C.conv1.output}}
    if not self._s_fused then steps[#steps + 1] = {"relu1", C.bn1.output} end
    steps[#steps + 1] = {"conv2", C.relu1.output}
    steps[#steps + 1] = {"bn2", C.conv2.output}
    local gb = self:chain_backward(steps, gs, need)
    local gsc
    if C.shortcut then
      if need ~= false or C.shortcut:has_trainable() then gsc = self:call_child("shortcut", "backward", x, gs, need) end
    else
      gsc = gs
    end
    -- consumed gradients are dropped as soon as they are (see chain_backward)
    C.relu.gradInput = nil
    if C.shortcut then C.shortcut.gradInput = nil end
    if need == false then self.gradInput = nil; return nil end
    -- gb is conv1's fresh input gradient, used by nothing else: the sum goes into it
    self.gradInput = gb:add_(gsc)
    return self.gradInput
  end

  -- PreActBlock(cin, cout, stride[, opts]): o = relu(bn1(x));
  -- out = conv2(relu(bn2(conv1(o)))) + (shortcut(o) if the shape changes, else x)
  local PreActBlock = nn.class("PreActBlock")
  nn.PreActBlock = PreActBlock
  function PreActBlock:init(cin, cout, stride, opts)
    opts = opts or {}
    local kind = opts.norm or "bn"
    self:add("bn1", norm_layer(kind, cin, opts))
    self:add("relu1", nn.ReLU())
    self:add("conv1", nn.Conv2d(cin, cout, 3, {stride = stride, padding = 1, bias = false, rng = opts.rng}))
    self:add("bn2", norm_layer(kind, cout, opts))
    self:add("relu2", nn.ReLU())
    self:add("conv2", nn.Conv2d(cout, cout, 3, {padding = 1, bias = false, rng = opts.rng}))
    local sc = shortcut(cin, cout, stride, kind, opts, false)
    if sc then self:add("shortcut", sc) end
  end

  function PreActBlock:forward(x)
    nn.ensure_built(self)
    local o, h
    local C = self._children
    o, self._s_fused1 = norm_relu(self, "bn1", "relu1", x)
    self._s_folded = nil
    if foldable(self, {C.bn1, C.bn2}) then -- bn2 folds into conv1 (bn1 comes before a ReLU)
      local a, b = C.bn2:eval_affine()
      h = C.conv1:forward_affine(o, a, b, true)
      C.relu2.output = h
      self._s_folded = true
    else
      h, self._s_fused2 = norm_relu(self, "bn2", "relu2", conv_stats(self, "conv1", "bn2", o))
    end
    h = self:call_child("conv2", "forward", h)
    local s = self._children.shortcut and self:call_child("shortcut", "forward", o) or x
    self.output = h + s
    return self.output
  end

  function PreActBlock:backward(x, g, need)
    if need == false and not self:has_trainable() then self.gradInput = nil; return nil end
    self:unfold_for_backward(x)
    local C = self._children
    local o = C.relu1.output
    -- o's gradient is needed when anything below it trains or the input gradient is wanted
    local need_o = need ~= false or C.bn1:has_trainable()
    local steps = {{"conv1", o}, {"bn2", C.conv1.output}}
    if not self._s_fused2 then steps[#steps + 1] = {"relu2", C.bn2.output} end
    steps[#steps + 1] = {"conv2", C.relu2.output}
    local go = self:chain_backward(steps, g, need_o)
    if C.shortcut and (need_o or C.shortcut:has_trainable()) then
      local gsc = self:call_child("shortcut", "backward", o, g, need_o)
      C.shortcut.gradInput = nil
      if need_o then go = go + gsc end
    end
    local gx
    if need_o then
      local first = {{"bn1", x}}
      if not self._s_fused1 then first[2] = {"relu1", C.bn1.output} end
      gx = self:chain_backward(first, go, need)
    end
    if need == false then self.gradInput = nil; return nil end
    if not C.shortcut then gx = gx + g end
    self.gradInput = gx
    return gx
  end

  -- TransformerBlock(dim, heads[, {mlp_ratio = 4, rng}]), pre-LN:
  -- x1 = x + attn(ln1(x)); out = x1 + fc2(gelu(fc1(ln2(x1))))
  local TransformerBlock = nn.class("TransformerBlock")
  nn.TransformerBlock = TransformerBlock
  function TransformerBlock:init(dim, heads, opts)
    opts = opts or {}
    local hidden = math.floor(dim * (opts.mlp_ratio or 4))
    self:add("ln1", nn.LayerNorm(dim))
    self:add("attn", nn.MultiheadAttention(dim, heads, {rng = opts.rng}))
    self:add("ln2", nn.LayerNorm(dim))
    self:add("fc1", nn.Linear(dim, hidden, {rng = opts.rng}))
    self:add("act", nn.GELU())
    self:add("fc2", nn.Linear(hidden, dim, {rng = opts.rng}))
  end

  function TransformerBlock:forward(x)
    nn.ensure_built(self)
    local a = self:call_child("attn", "forward", self:call_child("ln1", "forward", x))
    local x1 = x + a
    local h = x1
    for _, name in ipairs{"ln2", "fc1", "act", "fc2"} do h = self:call_child(name, "forward", h) end
    self._s_x1 = x1
    self.output = x1 + h
    return self.output
  end

  function TransformerBlock:backward(x, g, need)
    if need == false and not self:has_trainable() then self.gradInput = nil; return nil end
    local C = self._children
    local x1 = self._s_x1
    local need_x1 = need ~= false or C.ln1:has_trainable() or C.attn:has_trainable()
    local gm = self:chain_backward({{"ln2", x1}, {"fc1", C.ln2.output}, {"act", C.fc1.output},
      {"fc2", C.act.output}}, g, need_x1)
    if not need_x1 then self.gradInput = nil; return nil end
    local g1 = g + gm
    local ga = self:chain_backward({{"ln1", x}, {"attn", C.ln1.output}}, g1, need)
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = g1 + ga
    return self.gradInput
  end
end
