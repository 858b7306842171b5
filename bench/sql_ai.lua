-- ai() in SQL over N rows against a model server:
--   skein run bench/sql_ai.lua SPEC N CONCURRENCY
local skein = require("skein")
local spec, n, conc = arg[1], tonumber(arg[2]), tonumber(arg[3])
skein.set_model(spec)
skein.set_option("quiet", "1")
skein.set_option("sql_concurrency", tostring(conc))
local rows = {}
for i = 1, n do rows[i] = { id = i, name = "item " .. i } end
local df = skein.df.from_rows(rows, { "id", "name" })
local t0 = os.clock()
local got = 0
for r in df:sql("SELECT id, ai('Name a colour for', name) AS colour FROM {df}"):rows() do
  if r.colour then got = got + 1 end
end
print(string.format("rows=%d answered=%d model_calls=%d cpu_s=%.3f", n, got,
                    skein.usage().calls, os.clock() - t0))
