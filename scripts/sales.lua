-- sales.lua: natural-language DataFrames.
--
--   skein run scripts/sales.lua [OUT.csv]
--
-- Loads a CSV into SQLite, transforms it in English (the model writes the
-- SQL; the engine computes), maps a column row by row, verifies an
-- expectation with a SQL check, writes a CSV, and shows that a model
-- asking to change the data is refused.  Offline it uses a bundled
-- scripted model; set SKEIN_MODEL or OPENAI_API_KEY for a real one.
local skein = require("skein")
local here = (debug.getinfo(1, "S").source:match("^@(.*/)")) or "./"
local out_path = arg and arg[1] or os.tmpname()

if skein.model() then
  print("model: " .. skein.model())
else
  skein.set_model("scripted:" .. here .. "sales-model.json")
  print("model: the bundled scripted model (canned replies, offline)")
end

print("\n== 1. load a CSV")
local sales = skein.df.read_csv(here .. "data/sales.csv")
local types = {}
for _, c in ipairs(sales:columns()) do types[#types + 1] = c.name .. " " .. c.type end
print(string.format("%d rows: %s", sales:count(), table.concat(types, ", ")))
sales:show(4)

print("\n== 2. transform in English")
local avg = sales:ai_transform("get 4 week moving average sales by dept")
print("the SQL it wrote:\n" .. avg.query)
avg:show(6)

print("\n== 3. map a column, row by row (concurrent, cached)")
local moods, s = sales:ai_map("In one word, the mood of this note: {note}", { as = "mood", progress = false })
moods:sql("SELECT dept, week, note, mood FROM {df}"):show(6)
print(string.format("%d rows, %d model calls, %d from the cache, %d failed",
  s.rows, s.model_calls, s.cached, s.failed))
local _, again = sales:ai_map("In one word, the mood of this note: {note}", { as = "mood", progress = false })
print(string.format("the same map again: %d model calls, %d from the cache", again.model_calls, again.cached))

print("\n== 4. verify an expectation with a SQL check")
local ok, evidence, check = avg:ai_verify("no moving average is negative")
print(string.format("holds: %s (%s)\ncheck: %s", tostring(ok), evidence, check))

print("\n== 5. write a CSV")
avg:to_csv(out_path)
print("wrote " .. out_path)

print("\n== 6. generated SQL can only read")
local before = sales:count()
local refused, err = pcall(sales.ai_transform, sales, "delete the toys rows", { repairs = 1 })
print(string.format("%s: %s", err.kind, (err.message:gsub("\n.*", ""))))
print(string.format("rows before: %d, after: %d", before, sales:count()))
assert(not refused and sales:count() == before)
