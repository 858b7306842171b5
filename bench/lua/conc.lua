-- N calls in flight at once on the event loop: skein run bench/lua/conc.lua SPEC N
local skein = require("skein")
local spec, n = arg[1], tonumber(arg[2])
skein.set_model(spec)
skein.load_skills("bench/skills")
local branches = {}
for i = 1, n do branches[i] = { "Bench.Echo", { input = "hello" } } end
local results = skein.parallel(branches, { max = n })
for i = 1, n do assert(results[i] == "ok") end
print(string.format("calls=%d", #results))
