-- slots_bench.lua -- the row-operator workload of bench/slots_bench.sh:
-- ROWS calls, row i to function Rows.F((i-1) % FUNCS + 1), CONC in flight
-- at once on one kernel (so one connector, one slot table).  The model
-- and the option slots come from the command line.  Prints the calls and
-- the prompt and completion tokens the server reported.
local skein = require("skein")
local rows = tonumber(os.getenv("ROWS") or "200")
local funcs = tonumber(os.getenv("FUNCS") or "1")
local conc = tonumber(os.getenv("CONC") or "16")

local words = { "red", "big", "small", "happy", "sad", "old", "new", "blue" }
local branches = {}
for i = 1, rows do
  local fn = "Rows.F" .. ((i - 1) % funcs + 1)
  local row = string.format("Row %d: the %s dog saw a %s cat.", i,
                            words[i % #words + 1], words[(i * 3) % #words + 1])
  branches[i] = function() return skein.invoke(fn, { input = row }) end
end
local results = skein.parallel(branches, { max = conc })
assert(#results == rows, "a row is missing")
local u = skein.usage()
print(string.format("calls %d prompt_tokens %d completion_tokens %d failures %d",
                    u.calls, u.prompt_tokens, u.completion_tokens, u.failures))
