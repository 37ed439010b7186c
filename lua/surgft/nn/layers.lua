-- Leaf layers over the C kernels (sf.kernels): Linear, Conv2d, norms, activations,
-- pooling, Flatten, Dropout, and the transformer pieces (patch embedding, tokens,
-- multi-head self-attention, token selection).
--
-- Each backward computes a parameter's gradient only when that parameter trains, and
-- the input gradient only when `need` is not false: frozen layers cost a forward pass.
return function(nn, sf)
  local K = sf.kernels

  local function rng_of(opts) return opts and opts.rng or sf.default_rng() end

  -- U(-bound, bound), PyTorch's default for Linear/Conv (kaiming_uniform with a = sqrt(5))
  local function uniform(shape, bound, rng)
    return sf.empty(shape):uniform_(rng, -bound, bound)
  end

  local function grad_if(self, attr)
    local rec = self._params[attr]
    if rec and rec.trainable then return rec.grad end
    return nil
  end

  local function check_int(fn, name, v, min)
    if math.type(v) ~= "integer" or v < (min or 1) then
      error(string.format("%s: %s must be an integer >= %d, got %s", fn, name, min or 1, tostring(v)), 3)
    end
  end

  local function ensure_built(self) if not self._built then self:build() end end

  -- Per-example gradient moments (for the per-example SNR): while a module's _s_moments
  -- holds {[attr] = {sum = T, sumsq = T}}, its backward adds the sum and the sum of
  -- squares over the batch's examples of each parameter's per-example gradient. e is
  -- [N, ...] with one row per example.
  local function add_moments(pair, e)
    if not pair then return end
    local n = e:size(1)
    local flat = e:reshape(n, -1)
    pair.sum:add_(flat:sum(1):view(pair.sum:size()))
    pair.sumsq:add_((flat * flat):sum(1):view(pair.sum:size()))
  end
  nn.add_moments = add_moments
  nn.ensure_built = ensure_built

  local function shape_str(t) return "[" .. table.concat(t:size(), ",") .. "]" end
  nn.shape_str = shape_str

  -- ---- Linear ----

  local Linear = nn.class("Linear")
  nn.Linear = Linear

  -- Linear(in, out[, {bias = true, rng = r}]): y = x W^T + b over the last dimension
  function Linear:init(nin, nout, opts)
    check_int("Linear", "in_features", nin)
    check_int("Linear", "out_features", nout)
    opts = opts or {}
    self.nin, self.nout = nin, nout
    local bound = 1 / math.sqrt(nin)
    local rng = rng_of(opts)
    self:param("weight", uniform({nout, nin}, bound, rng))
    if opts.bias ~= false then self:param("bias", uniform({nout}, bound, rng)) end
  end

  function Linear:forward(input)
    ensure_built(self)
    local s = input:size()
    if s[#s] ~= self.nin then
      error(string.format("Linear(%d -> %d): input has shape %s, expected [...,%d]", self.nin, self.nout,
        shape_str(input), self.nin), 2)
    end
    self.output = K.linear_forward(input, self.weight, self.bias)
    return self.output
  end

  function Linear:moments(input, gradOutput, acc)
    local w, b = acc.weight, acc.bias
    K.linear_grad_moments(gradOutput, input, w and w.sum, w and w.sumsq, b and b.sum, b and b.sumsq)
  end

  function Linear:backward(input, gradOutput, need)
    if self._s_moments then self:moments(input, gradOutput, self._s_moments) end
    local dw, db = grad_if(self, "weight"), grad_if(self, "bias")
    if dw or db then K.linear_backward_weight(gradOutput, input, dw, db, 1) end
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = K.linear_backward_input(gradOutput, self.weight)
    if self.gradInput:dim() ~= input:dim() then self.gradInput = self.gradInput:view(input:size()) end
    return self.gradInput
  end

  function Linear:extra_repr()
    return string.format("%d -> %d%s", self.nin, self.nout, self.bias and "" or ", no bias")
  end

  -- ---- Conv2d ----

  local Conv2d = nn.class("Conv2d")
  nn.Conv2d = Conv2d

  -- Conv2d(in, out, kernel[, {stride = 1, padding = 0, bias = true, rng = r}])
  function Conv2d:init(cin, cout, kernel, opts)
    check_int("Conv2d", "in_channels", cin)
    check_int("Conv2d", "out_channels", cout)
    check_int("Conv2d", "kernel_size", kernel)
    opts = opts or {}
    self.cin, self.cout, self.k = cin, cout, kernel
    self.stride, self.padding = opts.stride or 1, opts.padding or 0
    check_int("Conv2d", "stride", self.stride)
    check_int("Conv2d", "padding", self.padding, 0)
    local bound = 1 / math.sqrt(cin * kernel * kernel)
    local rng = rng_of(opts)
    self:param("weight", uniform({cout, cin, kernel, kernel}, bound, rng))
    if opts.bias ~= false then self:param("bias", uniform({cout}, bound, rng)) end
  end

  -- forward(input[, stats]): stats = true also returns each image's BatchNorm row
  -- statistics of the output, computed as it is written (containers pass them to a
  -- training-mode BatchNorm that follows, which then skips its own pass over the output)
  function Conv2d:forward(input, stats)
    ensure_built(self)
    if input:dim() ~= 4 or input:size(2) ~= self.cin then
      error(string.format("Conv2d(%d -> %d): input has shape %s, expected [N,%d,H,W]", self.cin, self.cout,
        shape_str(input), self.cin), 2)
    end
    local st
    self.output, st = K.conv2d_forward(input, self.weight, self.bias, self.stride, self.padding, nil, nil, nil,
      stats == true or nil)
    return self.output, st
  end
  function Conv2d:bn_stats() return true end

  -- a[k] * conv(input) + b[k] with a, b per output channel (a BatchNorm in eval mode
  -- folded in: the weights are scaled, the shift joins the bias), in one convolution;
  -- then + residual when given, then max(., 0) when relu, as the result is written.
  -- Used by the blocks on inference-only paths; it leaves no output of its own.
  function Conv2d:forward_affine(input, a, b, relu, residual)
    ensure_built(self)
    if input:dim() ~= 4 or input:size(2) ~= self.cin then
      error(string.format("Conv2d(%d -> %d): input has shape %s, expected [N,%d,H,W]", self.cin, self.cout,
        shape_str(input), self.cin), 2)
    end
    local k, c = self.cout, self.cin
    local w = self.weight * a:view(k, 1, 1, 1):expand(k, c, self.k, self.k)
    local bias = self.bias and (self.bias * a + b) or b
    local out = K.conv2d_forward(input, w, bias, self.stride, self.padding, nil, relu, residual)
    self.output = nil
    return out
  end

  function Conv2d:moments(input, gradOutput, acc)
    local w, b = acc.weight, acc.bias
    K.conv2d_grad_moments(gradOutput, input, self.weight:size(), self.stride, self.padding, w and w.sum,
      w and w.sumsq, b and b.sum, b and b.sumsq)
  end

  function Conv2d:backward(input, gradOutput, need)
    if self._s_moments then self:moments(input, gradOutput, self._s_moments) end
    local dw, db = grad_if(self, "weight"), grad_if(self, "bias")
    -- both gradients from one pass over gradOutput where the shape allows it
    self.gradInput = K.conv2d_backward(gradOutput, self.weight, input, dw, db, self.stride, self.padding, 1,
      need ~= false)
    return self.gradInput
  end

  function Conv2d:extra_repr()
    return string.format("%d -> %d, %dx%d, stride %d, pad %d%s", self.cin, self.cout, self.k, self.k, self.stride,
      self.padding, self.bias and "" or ", no bias")
  end

  -- ---- normalisation ----

  local BN_MODES = {eval = true, batch = true, train = true, tent = true}

  local BatchNorm = nn.class("BatchNorm")
  nn.BatchNorm = BatchNorm

  -- BatchNorm(C[, {eps = 1e-5, momentum = 0.1, affine = true, dims = 2 | 4}])
  -- mode: explicit per layer (set_mode) or, when unset, "train" under training() and
  -- "eval" under evaluate(). A parent's training() never overrides an explicit mode.
  function BatchNorm:init(c, opts)
    check_int("BatchNorm", "num_features", c)
    opts = opts or {}
    self.c, self.eps, self.momentum = c, opts.eps or 1e-5, opts.momentum or 0.1
    self.dims = opts.dims
    if opts.affine ~= false then
      self:param("weight", sf.ones(c))
      self:param("bias", sf.zeros(c))
    end
    self:buffer("running_mean", sf.zeros(c))
    self:buffer("running_var", sf.ones(c))
  end

  function BatchNorm:set_mode(mode)
    if mode ~= nil and not BN_MODES[mode] then
      error(string.format("set_mode: BatchNorm mode must be 'eval', 'batch', 'train' or 'tent' (or nil), got '%s'",
        tostring(mode)), 2)
    end
    self._mode = mode
    return self
  end

  function BatchNorm:mode() return self._mode or (self._train and "train" or "eval") end

  -- forward(input[, relu[, stats]]): relu = true returns max(bn(input), 0) from the same
  -- pass (the blocks use it for a BatchNorm followed by a ReLU); backward then takes the
  -- gradient of that output and applies the ReLU's mask itself. stats: the input's row
  -- statistics from the Conv2d that wrote it (Conv2d:forward(x, true)), used with batch
  -- statistics instead of a pass over the input (same bits). out: write the result there
  -- (the blocks pass the input itself when no backward will read it: in place).
  -- residual (with relu, batch statistics only: see fuses_add_relu): returns
  -- max(bn(input) + residual, 0) from one pass, for a ResNet block whose ReLU after the sum
  -- owns that output; this norm then keeps no output and its backward is the plain one
  function BatchNorm:forward(input, relu, stats, out, residual)
    ensure_built(self)
    if input:dim() < 2 or input:size(2) ~= self.c or (self.dims and input:dim() ~= self.dims) then
      error(string.format("%s(%d): input has shape %s, expected %s", self:type(), self.c, shape_str(input),
        self.dims == 4 and ("[N," .. self.c .. ",H,W]") or self.dims == 2 and ("[N," .. self.c .. "]")
          or ("[N," .. self.c .. ",...]")), 2)
    end
    local mode = self:mode()
    relu = relu == true
    self._s_batch_stats = mode ~= "eval"
    if residual then
      if not relu or mode == "eval" then
        error(string.format("%s: a residual is only taken with relu = true and batch statistics (mode %s)",
          self:type(), mode), 2)
      end
      local y
      local rm, rv = nil, nil
      if mode == "train" then rm, rv = self.running_mean, self.running_var end
      y, self._s_mean, self._s_invstd = K.batchnorm_forward_train(input, self.weight, self.bias, rm, rv,
        self.momentum, self.eps, out, true, stats, residual)
      self._s_relu, self.output = nil, nil
      return y
    end
    self._s_relu = relu or nil
    if mode == "eval" then
      self.output, self._s_invstd = K.batchnorm_forward_eval(input, self.weight, self.bias, self.running_mean,
        self.running_var, self.eps, out, relu)
      self._s_mean = self.running_mean
    elseif mode == "train" then
      self.output, self._s_mean, self._s_invstd = K.batchnorm_forward_train(input, self.weight, self.bias,
        self.running_mean, self.running_var, self.momentum, self.eps, out, relu, stats)
    else -- batch, tent: batch statistics, running statistics untouched
      self.output, self._s_mean, self._s_invstd = K.batchnorm_forward_train(input, self.weight, self.bias, nil, nil,
        self.momentum, self.eps, out, relu, stats)
    end
    if relu then
      -- the pre-activation is never materialised: output stays empty rather than hold
      -- what is really the ReLU's output (which the block gives the ReLU); the fused
      -- output is kept privately for the backward's mask
      self._s_out, self.output = self.output, nil
      return self._s_out
    end
    return self.output
  end

  -- a BatchNorm can take the ReLU that follows it into its own pass (see forward)
  function BatchNorm:fuses_relu() return true end
  -- ... and a residual sum before that ReLU, on batch statistics
  function BatchNorm:fuses_add_relu() return self:mode() ~= "eval" end

  -- in eval mode a BatchNorm is y = a x + b per channel: a = gamma / sqrt(running_var +
  -- eps), b = beta - running_mean a (what a convolution before it can absorb); nil in the
  -- other modes
  function BatchNorm:eval_affine()
    if self:mode() ~= "eval" then return nil end
    local inv = (self.running_var + self.eps):sqrt()
    local a = self.weight and self.weight / inv or 1 / inv
    local b = self.bias and self.bias - self.running_mean * a or -(self.running_mean * a)
    return a, b
  end

  -- per example n: dgamma_n[c] = sum over positions of dout * xhat, dbeta_n[c] = sum of
  -- dout, with xhat from the statistics of the forward (exactly per-example in eval mode)
  function BatchNorm:moments(input, gradOutput, acc)
    if self._s_relu then gradOutput = K.relu_backward(gradOutput, self._s_out) end
    local n, c = input:size(1), self.c
    local x, g = input:reshape(n, c, -1), gradOutput:reshape(n, c, -1)
    local hw = x:size(3)
    local xhat = (x - self._s_mean:view(1, c, 1):expand(n, c, hw)) * self._s_invstd:view(1, c, 1):expand(n, c, hw)
    add_moments(acc.weight, (g * xhat):sum(3))
    add_moments(acc.bias, g:sum(3))
  end

  function BatchNorm:backward(input, gradOutput, need)
    if self._s_moments then self:moments(input, gradOutput, self._s_moments) end
    local dw, db = grad_if(self, "weight"), grad_if(self, "bias")
    local want = need ~= false
    if not (dw or db or want) then self.gradInput = nil; return nil end
    self.gradInput = K.batchnorm_backward(gradOutput, input, self.weight, self._s_mean, self._s_invstd, want, dw, db,
      self._s_batch_stats, 1, self._s_relu or false, self.bias)
    if not want then self.gradInput = nil end
    return self.gradInput
  end

  function BatchNorm:extra_repr()
    return string.format("%d, eps %g, mode %s%s", self.c, self.eps, self:mode(), self._mode and " (explicit)" or "")
  end

  nn.BatchNorm1d = nn.class("BatchNorm1d", BatchNorm)
  function nn.BatchNorm1d:init(c, opts)
    opts = opts or {}
    opts.dims = 2
    BatchNorm.init(self, c, opts)
  end
  nn.BatchNorm2d = nn.class("BatchNorm2d", BatchNorm)
  function nn.BatchNorm2d:init(c, opts)
    opts = opts or {}
    opts.dims = 4
    BatchNorm.init(self, c, opts)
  end

  local LayerNorm = nn.class("LayerNorm")
  nn.LayerNorm = LayerNorm

  -- LayerNorm(D[, {eps = 1e-5, affine = true}]) over the last dimension
  function LayerNorm:init(d, opts)
    check_int("LayerNorm", "normalized_shape", d)
    opts = opts or {}
    self.d, self.eps = d, opts.eps or 1e-5
    if opts.affine ~= false then
      self:param("weight", sf.ones(d))
      self:param("bias", sf.zeros(d))
    end
  end

  function LayerNorm:forward(input)
    ensure_built(self)
    if input:size(-1) ~= self.d then
      error(string.format("LayerNorm(%d): input has shape %s, expected [...,%d]", self.d, shape_str(input), self.d), 2)
    end
    self.output, self._s_mean, self._s_rstd = K.layernorm_forward(input, self.d, self.weight, self.bias, self.eps)
    return self.output
  end

  function LayerNorm:moments(input, gradOutput, acc)
    local n, d = input:size(1), self.d
    local rows = input:numel() // d
    local x = input:reshape(rows, d)
    local xhat = ((x - self._s_mean:view(rows, 1):expand(rows, d)) * self._s_rstd:view(rows, 1):expand(rows, d))
    local g = gradOutput:reshape(n, -1, d)
    add_moments(acc.weight, (g * xhat:view(n, -1, d)):sum(2))
    add_moments(acc.bias, g:sum(2))
  end

  function LayerNorm:backward(input, gradOutput, need)
    if self._s_moments then self:moments(input, gradOutput, self._s_moments) end
    local dw, db = grad_if(self, "weight"), grad_if(self, "bias")
    local want = need ~= false
    if not (dw or db or want) then self.gradInput = nil; return nil end
    self.gradInput = K.layernorm_backward(gradOutput, input, self.d, self.weight, self._s_mean, self._s_rstd, want, dw,
      db)
    if not want then self.gradInput = nil end
    return self.gradInput
  end

  function LayerNorm:extra_repr() return string.format("%d, eps %g", self.d, self.eps) end

  local GroupNorm = nn.class("GroupNorm")
  nn.GroupNorm = GroupNorm

  -- GroupNorm(G, C[, {eps = 1e-5, affine = true}]) over [N,C,...]
  function GroupNorm:init(g, c, opts)
    check_int("GroupNorm", "num_groups", g)
    check_int("GroupNorm", "num_channels", c)
    if c % g ~= 0 then error(string.format("GroupNorm: %d channels do not split into %d groups", c, g), 3) end
    opts = opts or {}
    self.g, self.c, self.eps = g, c, opts.eps or 1e-5
    if opts.affine ~= false then
      self:param("weight", sf.ones(c))
      self:param("bias", sf.zeros(c))
    end
  end

  function GroupNorm:forward(input)
    ensure_built(self)
    if input:dim() < 2 or input:size(2) ~= self.c then
      error(string.format("GroupNorm(%d, %d): input has shape %s, expected [N,%d,...]", self.g, self.c,
        shape_str(input), self.c), 2)
    end
    self.output, self._s_mean, self._s_rstd = K.groupnorm_forward(input, self.g, self.weight, self.bias, self.eps)
    return self.output
  end

  function GroupNorm:moments(input, gradOutput, acc)
    local n, c, g = input:size(1), self.c, self.g
    local x = input:reshape(n, g, -1)
    local m = x:size(3)
    local xhat = ((x - self._s_mean:view(n, g, 1):expand(n, g, m)) * self._s_rstd:view(n, g, 1):expand(n, g, m))
    local gr = gradOutput:reshape(n, c, -1)
    add_moments(acc.weight, (gr * xhat:view(n, c, -1)):sum(3))
    add_moments(acc.bias, gr:sum(3))
  end

  function GroupNorm:backward(input, gradOutput, need)
    if self._s_moments then self:moments(input, gradOutput, self._s_moments) end
    local dw, db = grad_if(self, "weight"), grad_if(self, "bias")
    local want = need ~= false
    if not (dw or db or want) then self.gradInput = nil; return nil end
    self.gradInput = K.groupnorm_backward(gradOutput, input, self.g, self.weight, self._s_mean, self._s_rstd, want, dw,
      db)
    if not want then self.gradInput = nil end
    return self.gradInput
  end

  function GroupNorm:extra_repr() return string.format("%d groups, %d channels", self.g, self.c) end

  -- ---- activations ----

  -- saved = "input" or "output": what the backward kernel needs
  local function activation(name, fwd, bwd, saved)
    local A = nn.class(name)
    nn[name] = A
    function A:init(opts) self.approximate = opts and opts.approximate end
    function A:forward(input)
      self.output = fwd(input, nil, self.approximate)
      return self.output
    end
    function A:backward(input, gradOutput, need)
      if need == false then self.gradInput = nil; return nil end
      self.gradInput = bwd(gradOutput, saved == "input" and input or self.output, nil, self.approximate)
      return self.gradInput
    end
    return A
  end
  activation("ReLU", K.relu_forward, K.relu_backward, "output")
  activation("GELU", K.gelu_forward, K.gelu_backward, "input")
  activation("Tanh", K.tanh_forward, K.tanh_backward, "output")
  activation("Sigmoid", K.sigmoid_forward, K.sigmoid_backward, "output")

  -- ---- dropout ----

  local Dropout = nn.class("Dropout")
  nn.Dropout = Dropout

  -- Dropout(p[, {rng = r}]): active under training(), the identity under evaluate()
  function Dropout:init(p, opts)
    if type(p) ~= "number" or p < 0 or p >= 1 then
      error(string.format("Dropout: p must be a number in [0, 1), got %s", tostring(p)), 3)
    end
    self.p, self.rng = p, rng_of(opts)
  end

  function Dropout:forward(input)
    if self._train and self.p > 0 then
      self.output, self._s_mask = K.dropout_forward(input, self.p, self.rng)
    else
      self.output, self._s_mask = input, nil
    end
    return self.output
  end

  function Dropout:backward(_, gradOutput, need)
    if need == false then self.gradInput = nil; return nil end
    if self._s_mask then
      self.gradInput = K.dropout_backward(gradOutput, self._s_mask, self.p)
    else
      self.gradInput = gradOutput
    end
    return self.gradInput
  end

  function Dropout:extra_repr() return string.format("p = %g", self.p) end

  -- ---- pooling and reshaping ----

  local MaxPool2d = nn.class("MaxPool2d")
  nn.MaxPool2d = MaxPool2d
  function MaxPool2d:init(kernel, stride, padding)
    check_int("MaxPool2d", "kernel_size", kernel)
    self.k, self.stride, self.padding = kernel, stride or kernel, padding or 0
  end
  function MaxPool2d:forward(input)
    self.output, self._s_idx = K.maxpool2d_forward(input, self.k, self.stride, self.padding)
    return self.output
  end
  function MaxPool2d:backward(input, gradOutput, need)
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = K.maxpool2d_backward(gradOutput, self._s_idx, input)
    return self.gradInput
  end
  function MaxPool2d:extra_repr() return string.format("%d, stride %d, pad %d", self.k, self.stride, self.padding) end

  local AvgPool2d = nn.class("AvgPool2d")
  nn.AvgPool2d = AvgPool2d
  function AvgPool2d:init(kernel, stride, padding)
    check_int("AvgPool2d", "kernel_size", kernel)
    self.k, self.stride, self.padding = kernel, stride or kernel, padding or 0
  end
  function AvgPool2d:forward(input)
    self.output = K.avgpool2d_forward(input, self.k, self.stride, self.padding, true)
    return self.output
  end
  function AvgPool2d:backward(input, gradOutput, need)
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = K.avgpool2d_backward(gradOutput, input, self.k, self.stride, self.padding, true)
    return self.gradInput
  end
  function AvgPool2d:extra_repr() return string.format("%d, stride %d, pad %d", self.k, self.stride, self.padding) end

  local GlobalAvgPool = nn.class("GlobalAvgPool")
  nn.GlobalAvgPool = GlobalAvgPool
  function GlobalAvgPool:forward(input)
    self.output = K.global_avgpool_forward(input)
    return self.output
  end
  function GlobalAvgPool:backward(input, gradOutput, need)
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = K.global_avgpool_backward(gradOutput, input)
    return self.gradInput
  end

  local Flatten = nn.class("Flatten")
  nn.Flatten = Flatten
  function Flatten:forward(input)
    self.output = input:reshape(input:size(1), -1)
    return self.output
  end
  function Flatten:backward(input, gradOutput, need)
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = gradOutput:reshape(input:size())
    return self.gradInput
  end

  -- ---- transformer pieces ----

  -- PatchEmbed(image, patch, in_channels, dim): [N,C,H,W] -> tokens [N,T,dim], T = (H/p)^2,
  -- a patch-sized, patch-strided convolution (child "proj")
  local PatchEmbed = nn.class("PatchEmbed")
  nn.PatchEmbed = PatchEmbed
  function PatchEmbed:init(image, patch, cin, dim, opts)
    check_int("PatchEmbed", "patch", patch)
    if image % patch ~= 0 then
      error(string.format("PatchEmbed: image size %d is not a multiple of the patch size %d", image, patch), 3)
    end
    self.image, self.patch, self.dim = image, patch, dim
    self.tokens = (image // patch) * (image // patch)
    self:add("proj", nn.Conv2d(cin, dim, patch, {stride = patch, rng = opts and opts.rng}))
  end
  function PatchEmbed:forward(input)
    ensure_built(self)
    local y = self:call_child(1, "forward", input)             -- [N,D,h,w]
    local n = y:size(1)
    self._s_y = y
    self.output = y:view(n, self.dim, -1):transpose(2, 3):contiguous()  -- [N,T,D]
    return self.output
  end
  function PatchEmbed:backward(input, gradOutput, need)
    local proj = self._children[1].module
    if need == false and not proj:has_trainable() then self.gradInput = nil; return nil end
    local y = self._s_y
    local gy = gradOutput:transpose(2, 3):contiguous():view(y:size())
    self.gradInput = self:call_child(1, "backward", input, gy, need)
    return self.gradInput
  end

  -- Tokens(T, dim): prepends a learned class token and adds a learned position embedding
  -- ([N,T,D] -> [N,T+1,D]); parameters "cls" [1,1,D] and "pos" [1,T+1,D]
  local Tokens = nn.class("Tokens")
  nn.Tokens = Tokens
  function Tokens:init(t, dim, opts)
    local rng = rng_of(opts)
    self.t, self.dim = t, dim
    self:param("cls", sf.randn({1, 1, dim}, rng):mul_(0.02))
    self:param("pos", sf.randn({1, t + 1, dim}, rng):mul_(0.02))
  end
  function Tokens:forward(input)
    ensure_built(self)
    local n, t, d = input:size(1), input:size(2), input:size(3)
    if t ~= self.t or d ~= self.dim then
      error(string.format("Tokens: input has shape %s, expected [N,%d,%d]", shape_str(input), self.t, self.dim), 2)
    end
    local out = sf.empty(n, t + 1, d)
    out:narrow(2, 1, 1):copy(self.cls:expand(n, 1, d))
    out:narrow(2, 2, t):copy(input)
    out:add_(self.pos:expand(n, t + 1, d))
    self.output = out
    return out
  end
  function Tokens:moments(_, gradOutput, acc)
    add_moments(acc.pos, gradOutput)
    add_moments(acc.cls, gradOutput:narrow(2, 1, 1))
  end

  function Tokens:backward(input, gradOutput, need)
    if self._s_moments then self:moments(input, gradOutput, self._s_moments) end
    local dcls, dpos = grad_if(self, "cls"), grad_if(self, "pos")
    if dpos then dpos:add_(gradOutput:sum(1, true)) end
    if dcls then dcls:add_(gradOutput:narrow(2, 1, 1):sum(1, true)) end
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = gradOutput:narrow(2, 2, self.t)
    return self.gradInput
  end

  -- SelectToken(i): [N,T,D] -> [N,D], the i-th token (1 = the class token)
  local SelectToken = nn.class("SelectToken")
  nn.SelectToken = SelectToken
  function SelectToken:init(i) self.i = i or 1 end
  function SelectToken:forward(input)
    self.output = input:select(2, self.i)
    return self.output
  end
  function SelectToken:backward(input, gradOutput, need)
    if need == false then self.gradInput = nil; return nil end
    local g = sf.zeros(input:size())
    g:select(2, self.i):copy(gradOutput)
    self.gradInput = g
    return g
  end

  -- MultiheadAttention(dim, heads): self-attention over [N,T,D]; children "qkv"
  -- (Linear D -> 3D) and "proj" (Linear D -> D)
  local MHSA = nn.class("MultiheadAttention")
  nn.MultiheadAttention = MHSA
  function MHSA:init(dim, heads, opts)
    check_int("MultiheadAttention", "dim", dim)
    check_int("MultiheadAttention", "heads", heads)
    if dim % heads ~= 0 then
      error(string.format("MultiheadAttention: dim %d is not a multiple of heads %d", dim, heads), 3)
    end
    self.dim, self.heads, self.hd = dim, heads, dim // heads
    self.scale = 1 / math.sqrt(self.hd)
    self:add("qkv", nn.Linear(dim, 3 * dim, opts))
    self:add("proj", nn.Linear(dim, dim, opts))
  end

  function MHSA:forward(input)
    ensure_built(self)
    if input:dim() ~= 3 or input:size(3) ~= self.dim then
      error(string.format("MultiheadAttention(%d, %d heads): input has shape %s, expected [N,T,%d]", self.dim,
        self.heads, shape_str(input), self.dim), 2)
    end
    local n, t = input:size(1), input:size(2)
    local h, hd = self.heads, self.hd
    local qkv = self:call_child(1, "forward", input)                      -- [N,T,3D]
    local parts = qkv:view(n, t, 3, h, hd):permute{3, 1, 4, 2, 5}          -- [3,N,H,T,hd]
    local q = parts:select(1, 1):contiguous():view(n * h, t, hd)
    local k = parts:select(1, 2):contiguous():view(n * h, t, hd)
    local v = parts:select(1, 3):contiguous():view(n * h, t, hd)
    local attn = q:matmul(k:transpose(2, 3)):mul_(self.scale):softmax(3)   -- [NH,T,T]
    local ctx = attn:matmul(v)                                              -- [NH,T,hd]
    local merged = ctx:view(n, h, t, hd):permute{1, 3, 2, 4}:contiguous():view(n, t, self.dim)
    self._s_q, self._s_k, self._s_v, self._s_attn, self._s_ctx = q, k, v, attn, merged
    self.output = self:call_child(2, "forward", merged)
    return self.output
  end

  function MHSA:backward(input, gradOutput, need)
    local qkv_m = self._children[1].module
    local below = need ~= false or qkv_m:has_trainable()
    local dctx = self:call_child(2, "backward", self._s_ctx, gradOutput, below)
    if not below then self.gradInput = nil; return nil end
    local n, t = input:size(1), input:size(2)
    local h, hd = self.heads, self.hd
    local q, k, v, attn = self._s_q, self._s_k, self._s_v, self._s_attn
    local dc = dctx:view(n, t, h, hd):permute{1, 3, 2, 4}:contiguous():view(n * h, t, hd)
    local dattn = dc:matmul(v:transpose(2, 3))                              -- [NH,T,T]
    local dv = attn:transpose(2, 3):matmul(dc)                              -- [NH,T,hd]
    -- softmax backward, scaled: ds = scale * a * (da - sum(da * a)), one row-parallel pass
    local ds = K.softmax_backward(dattn, attn, self.scale)
    local dq = ds:matmul(k)
    local dk = ds:transpose(2, 3):matmul(q)
    local dparts = sf.empty(3, n, h, t, hd)
    dparts:select(1, 1):copy(dq:view(n, h, t, hd))
    dparts:select(1, 2):copy(dk:view(n, h, t, hd))
    dparts:select(1, 3):copy(dv:view(n, h, t, hd))
    local dqkv = dparts:permute{2, 4, 1, 3, 5}:contiguous():view(n, t, 3 * self.dim)
    self.gradInput = self:call_child(1, "backward", input, dqkv, need)
    return self.gradInput
  end

  function MHSA:extra_repr() return string.format("%d, %d heads", self.dim, self.heads) end
end
