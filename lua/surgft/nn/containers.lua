-- Containers: Sequential (ordered, optionally named children), Residual (a branch plus
-- a shortcut, summed), Identity. Backward stops below the lowest trainable child when
-- no input gradient is wanted.
return function(nn, sf)
  local Sequential = nn.class("Sequential")
  nn.Sequential = Sequential

  -- Sequential{m1, m2, ...} (children named "0", "1", ... like PyTorch) or
  -- Sequential{{"stem", m1}, {"block1", m2}, ...} for named children
  function Sequential:init(list)
    for _, item in ipairs(list or {}) do
      if type(item) == "table" and item.forward == nil and item[2] then
        self:add(item[1], item[2])
      else
        self:add(item)
      end
    end
  end

  -- a container forwarded before anything built it is the root: build it here, or its
  -- first parametrised child would build itself as a separate model
  local function ensure_built(self) if not self._built then self:build() end end

  -- A BatchNorm directly followed by a ReLU runs as one pass (see Module:set_fusion): the
  -- ReLU gets the output, the BatchNorm keeps none, and the backward skips the ReLU's step.
  -- A Conv2d directly followed by a BatchNorm on batch statistics computes them as it
  -- writes its output (nn.stats_for), and the BatchNorm skips its pass over it.
  --
  -- Children get _s_nofold when something at or before them trains (a backward will pass
  -- through them: they keep what it needs). Where nothing does and a frozen Conv2d is
  -- followed by an eval-mode BatchNorm (and a ReLU), the three run as one convolution with
  -- the BatchNorm folded in (as in the blocks, see blocks.lua); with a BatchNorm on batch
  -- statistics there, it normalises the convolution's output in place. A backward through
  -- either recomputes the forward unfolded first.
  function Sequential:forward(input)
    ensure_built(self)
    local x, C, fused = input, self._children, nil
    local below = self._s_nofold or false
    self._s_folded = nil
    local i, stats = 1, nil
    while i <= #C do
      local m, nxt = C[i].module, C[i + 1] and C[i + 1].module
      local st = stats -- x's row statistics, from the Conv2d before m (a BatchNorm)
      stats = nil
      below = below or m:has_trainable()
      m._s_nofold = below or nil
      if nxt and not below and not self._no_fusion and m.forward_affine and nn.eval_bn(nxt)
        and not nxt:has_trainable() then
        local after = C[i + 2] and C[i + 2].module
        local relu = after ~= nil and after:type() == "ReLU"
        local a, b = nxt:eval_affine()
        x = m:forward_affine(x, a, b, relu)
        nxt.output = nil
        if relu then
          after.output = x
        else
          nxt.output = x
        end
        self._s_folded = true
        i = i + (relu and 3 or 2)
      elseif not self._no_fusion and nn.fuses_relu(m, nxt) then
        -- x from the Conv2d before (st), nothing trainable up to here: x is that
        -- convolution's own output and no backward will read it, so normalise it in place
        local inplace = st ~= nil and not below
        if inplace then self._s_folded, C[i - 1].module.output = true, nil end -- it keeps none
        x = self:call_child(i, "forward", x, true, st, inplace and x or nil)
        nxt.output = x
        fused = fused or {}
        fused[i + 1] = true
        i = i + 2
      elseif not self._no_fusion and nn.stats_for(m, nxt) then
        x, stats = self:call_child(i, "forward", x, true)
        i = i + 1
      else
        if st then
          local inplace = not below -- as above
          if inplace then self._s_folded, C[i - 1].module.output = true, nil end
          x = self:call_child(i, "forward", x, nil, st, inplace and x or nil)
        else
          x = self:call_child(i, "forward", x)
        end
        i = i + 1
      end
    end
    self._s_fused = fused
    self.output = x
    return x
  end

  function Sequential:backward(input, gradOutput, need)
    if need ~= false or self:has_trainable() then self:unfold_for_backward(input) end
    local steps, fused = {}, self._s_fused or {}
    for i, c in ipairs(self._children) do
      if not fused[i] then steps[#steps + 1] = {c.name, i == 1 and input or self._children[i - 1].module.output} end
    end
    self.gradInput = self:chain_backward(steps, gradOutput, need)
    return self.gradInput
  end

  function Sequential:extra_repr() return "" end

  local Identity = nn.class("Identity")
  nn.Identity = Identity
  function Identity:forward(input) self.output = input; return input end
  function Identity:backward(_, gradOutput, need)
    if need == false then self.gradInput = nil; return nil end
    self.gradInput = gradOutput
    return gradOutput
  end

  -- Residual(branch[, shortcut]): output = branch(x) + shortcut(x), shortcut = identity
  -- when absent. Children are named "branch" and "shortcut".
  local Residual = nn.class("Residual")
  nn.Residual = Residual
  function Residual:init(branch, shortcut)
    self:add("branch", branch)
    self:add("shortcut", shortcut or Identity())
  end

  function Residual:forward(input)
    ensure_built(self)
    local a = self:call_child(1, "forward", input)
    local b = self:call_child(2, "forward", input)
    local sa, sb = a:size(), b:size()
    if #sa ~= #sb then
      error(string.format("Residual: branch output has shape [%s] but shortcut output has shape [%s]",
        table.concat(sa, ","), table.concat(sb, ",")), 0)
    end
    for d = 1, #sa do
      if sa[d] ~= sb[d] then
        error(string.format("Residual: branch output has shape [%s] but shortcut output has shape [%s]",
          table.concat(sa, ","), table.concat(sb, ",")), 0)
      end
    end
    self.output = a + b
    return self.output
  end

  function Residual:backward(input, gradOutput, need)
    local want = need ~= false
    local branch, shortcut = self._children[1].module, self._children[2].module
    local ga, gb
    if want or branch:has_trainable() then ga = self:call_child(1, "backward", input, gradOutput, want) end
    if want or shortcut:has_trainable() then gb = self:call_child(2, "backward", input, gradOutput, want) end
    if not want then self.gradInput = nil; return nil end
    self.gradInput = ga + gb
    return self.gradInput
  end
end
