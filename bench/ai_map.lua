-- ai_map over N rows against a model server: skein run bench/ai_map.lua SPEC N CONCURRENCY
local skein = require("skein")
local spec, n, conc = arg[1], tonumber(arg[2]), tonumber(arg[3])
skein.set_model(spec)
skein.set_option("quiet", "1")
local rows = {}
for i = 1, n do rows[i] = { id = i, name = "item " .. i } end
local df = skein.df.from_rows(rows, { "id", "name" })
local t0 = os.clock()
local out, s = df:ai_map("Name a colour for {name}", { as = "colour", concurrency = conc,
  cache = false, progress = false })
local cpu = os.clock() - t0
print(string.format("rows=%d failed=%d model_calls=%d cpu_s=%.3f", s.rows, s.failed, s.model_calls, cpu))
