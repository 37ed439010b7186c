-- Small helpers shared by the Lua library.
local U = {}

-- check_options(fn, opts, allowed[, level]): every key of opts must be a key of allowed;
-- otherwise an error "<fn>: unknown option 'k' (valid: a, b, c)". level is error()'s, counted
-- from here (default 3: the caller of the function that called check_options)
function U.check_options(fn, opts, allowed, level)
  if type(opts) ~= "table" then
    error(string.format("%s: expected an options table, got %s", fn, type(opts)), level or 3)
  end
  for k in pairs(opts) do
    if allowed[k] == nil then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = tostring(n) end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (valid: %s)", fn, tostring(k), table.concat(names, ", ")),
        level or 3)
    end
  end
  return opts
end

return U
