-- DataFrames from Lua: making them, reading them, English to SQL with the
-- read-only guarantee, row operators with their summaries, errors.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_model("scripted:fixtures/df.json")
skein.set_option("quiet", "1")
local src = os.getenv("SKEIN_SRC") or "../.."
-- a fresh cache: the cache opens on first use, after this
local cache = assert(os.getenv("SKEIN_CACHE"), "SKEIN_CACHE must name a cache file")
assert(cache ~= "off", "this test needs the cache")
for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(cache .. suffix) end

local sales = skein.df.read_csv(src .. "/scripts/data/sales.csv")
T.eq(sales:count(), 24, "rows")
local cols = sales:columns()
T.eq(#cols, 4, "columns")
T.eq(cols[2].name .. ":" .. cols[2].type, "week:INTEGER", "inferred type")
T.match(tostring(sales), "^skein%.DataFrame df_", "tostring")

-- your own SQL
local toys = sales:sql("SELECT * FROM {df} WHERE dept = 'toys'")
T.eq(toys:count(), 12, "df:sql")
local n = 0
for row in toys:rows() do
  n = n + 1
  T.eq(math.type(row.sales), "integer", "integers come back as integers")
end
T.eq(n, 12, "rows() iterates")
T.eq(skein.df.from_table(sales.name):count(), 24, "from_table")
T.eq(skein.df.from_sql("SELECT 1 AS one"):count(), 1, "from_sql")
local made = skein.df.from_rows({ { a = 1, b = "x" }, { a = 2, b = "y" } })
T.eq(made:sql("SELECT SUM(a) AS s FROM {df}"):rows()().s, 3, "from_rows")

-- English to SQL
local totals = sales:ai_transform("total sales by dept")
T.match(totals.query, "GROUP BY dept", "the SQL is visible")
T.eq(totals.instruction, "total sales by dept", "the instruction is kept")
local t = {}
for row in totals:rows() do t[row.dept] = row.total end
local want = {}
for row in sales:rows() do want[row.dept] = (want[row.dept] or 0) + row.sales end
T.eq(t.toys, want.toys, "computed by the engine")
T.eq(t.garden, want.garden, "computed by the engine (garden)")
local before = skein.usage().calls
sales:ai_transform("total sales by dept")
T.eq(skein.usage().calls, before, "the same transform again is cached: no model call")

local e = T.raises("destructive SQL", sales.ai_transform, sales, "drop it", { repairs = 1 })
T.eq(e.kind, "query", "refused kind")
T.match(e.message, "refused", "says refused")
T.eq(sales:count(), 24, "the table is intact")

local ok, evidence, sql = totals:ai_verify("every total is positive")
T.eq(ok, true, "verify true")
T.match(evidence, "lowest=", "evidence")
T.match(sql, "MIN%(total%)", "the check's SQL")
ok = totals:ai_verify("every total is over a million")
T.eq(ok, false, "verify false")
T.match(totals:ai_explain(), "sales for each department", "explain")

-- row operators
local busy, s = sales:ai_filter("the note mentions a busy moment: {note}", { progress = false })
T.eq(busy:count(), 6, "filter keeps the yes rows")
T.eq(s.rows, 24, "summary rows")
T.eq(s.failed, 0, "summary failed")
local cls, cs = sales:ai_classify("note", { "fine", "problem" }, { progress = false })
local counts = {}
for row in cls:rows() do counts[row.label] = (counts[row.label] or 0) + 1 end
T.eq(counts.problem, 8, "classify: problems")
T.eq(counts.fine, 16, "classify: the rest (quotes and dots trimmed)")
T.eq(cs.failed, 0, "classify failures")
local ex = sales:ai_extract("note", { "topic", "words" }, { progress = false })
local row = ex:rows()()
T.eq(row.topic, "retail", "extract field")
T.eq(tostring(row.words), "3", "extract second field")
local again, s2 = sales:ai_filter("the note mentions a busy moment: {note}", { progress = false })
T.eq(s2.model_calls, 0, "re-run costs nothing")
T.eq(s2.cached, 24, "all from the cache")
T.eq(again:count(), 6, "same answer from the cache")
e = T.raises("unknown column", sales.ai_map, sales, "shout {nope}")
T.match(e.message, "nope", "names the unknown column")

-- CSV out and back
local path = os.tmpname()
totals:to_csv(path)
local back = skein.df.read_csv(path)
T.eq(back:count(), 2, "round trip")
os.remove(path)

-- errors and closing
e = T.raises("missing csv", skein.df.read_csv, "/nonexistent/x.csv")
T.eq(e.kind, "io", "missing file kind")
local bad = os.tmpname()
local f = io.open(bad, "w") f:write("a,b\n1,2\n3\n") f:close()
e = T.raises("ragged csv", skein.df.read_csv, bad)
T.eq(e.kind, "data", "ragged kind")
T.match(e.message, ":3", "ragged line")
os.remove(bad)
totals:close()
T.raises("closed", function() return totals:count() end)

T.finish()
