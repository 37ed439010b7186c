-- Losses: each returns the loss (a number) and the gradient with respect to its first
-- argument, ready for model:backward. Distance penalties towards reference weights add
-- their gradient straight into the trainable parameters' gradients.
return function(nn, sf)
  local K = sf.kernels

  -- cross_entropy(logits [N,K], targets [N] (1-based class ids)[, {label_smoothing = 0}])
  -- -> mean loss, dlogits
  function nn.cross_entropy(logits, targets, opts)
    local ls = opts and opts.label_smoothing or 0
    return K.cross_entropy(logits, targets, ls, true)
  end

  -- mse(pred, target) -> mean squared error, dpred
  function nn.mse(pred, target) return K.mse(pred, target, true) end

  -- softmax_entropy(logits [N,K]) -> mean entropy of softmax(logits), dlogits (TENT's loss)
  function nn.softmax_entropy(logits) return K.softmax_entropy(logits, true) end

  -- distance_penalty(model, reference, {p = 2, lambda = 1}) -> penalty; adds its
  -- gradient to every trainable parameter's gradient. p = 2: lambda * sum ||w - w0||^2
  -- (L2-SP); p = 1: lambda * sum |w - w0| (L1 towards the pre-trained weights).
  -- reference: name -> tensor (e.g. pretrained:state()).
  function nn.distance_penalty(model, reference, opts)
    opts = opts or {}
    local p, lambda = opts.p or 2, opts.lambda or 1
    if p ~= 1 and p ~= 2 then error(string.format("distance_penalty: p must be 1 or 2, got %s", tostring(p)), 2) end
    local total = 0
    for _, rec in ipairs(model:parameters()) do
      if rec.trainable then
        local ref = reference[rec.name]
        if not ref then error(string.format("distance_penalty: reference has no tensor '%s'", rec.name), 2) end
        local d = rec.value - ref
        if p == 2 then
          total = total + lambda * (d * d):sum()
          rec.grad:add_(d:mul_(2 * lambda))
        else
          total = total + lambda * d:abs():sum()
          rec.grad:add_(d:sign_():mul_(lambda))
        end
      end
    end
    return total
  end
end
