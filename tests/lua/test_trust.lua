-- Generated SQL keeps its bounds and its trust on every read path: rows,
-- to_csv, show, count, the row operators, and the user's own SQL over it.
-- Its ai()/skein() calls reach only the functions allowed when it was
-- written, and a statement that meets several such views is held to what
-- all of them allow.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_model("scripted:fixtures/trust.json")
skein.set_option("quiet", "1")
local src = os.getenv("SKEIN_SRC") or "../.."
for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove((os.getenv("SKEIN_CACHE") or "") .. suffix) end
local sales = skein.df.read_csv(src .. "/scripts/data/sales.csv")

-- a runaway query, read every way a user can read it
skein.set_option("sql_max_rows", "500")
local forever = sales:ai_transform("count forever", { cache = false })
local function bounded(what, fn)
  local err = T.raises(what, fn)
  T.eq(type(err) == "table" and err.kind, "query", what .. ": kind")
  T.match(type(err) == "table" and err.message, "sql_max_rows", what .. ": names the limit")
end
bounded("rows()", function() for _ in forever:rows() do end end)
local out = os.tmpname()
os.remove(out)
bounded("to_csv", function() forever:to_csv(out) end)
T.eq(io.open(out), nil, "to_csv left no file")
bounded("ai_map", function() return forever:ai_map("tag {note}") end)
bounded("the user's SQL over it", function()
  for _ in forever:sql("SELECT x * 2 AS y FROM {df}"):rows() do end
end)
bounded("a view of a view of it", function()
  local v = forever:sql("SELECT * FROM {df}"):sql("SELECT y FROM (SELECT x AS y FROM {df})")
  for _ in v:rows() do end
end)
-- show reads ten rows: within the bound, it works
local shown = io.output()
io.output("/dev/null")
forever:show(5)
io.output():close()
io.output(shown)
-- the time limit, on the same paths
skein.set_option("sql_max_rows", "0")
skein.set_option("sql_max_bytes", "0")
skein.set_option("sql_timeout_ms", "200")
local err = T.raises("time limit", function() return forever:count() end)
T.match(err and err.message, "sql_timeout_ms", "time limit named")
err = T.raises("time limit through views", function()
  return forever:sql("SELECT * FROM {df}"):sql("SELECT count(*) AS n FROM {df}"):count()
end)
T.match(err and err.message, "sql_timeout_ms", "time limit through views named")
skein.set_option("sql_timeout_ms", "30000")
skein.set_option("sql_max_bytes", "1000")
err = T.raises("byte limit", function() for _ in forever:rows() do end end)
T.match(err and err.message, "sql_max_bytes", "byte limit named")
skein.set_option("sql_max_bytes", tostring(64 << 20))
skein.set_option("sql_max_rows", "1000000")

-- the user's own SQL is not bounded: more rows of their own than the
-- limit of generated SQL
local big = skein.df.from_sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                              .. "LIMIT 2000) SELECT x FROM c")
skein.set_option("sql_max_rows", "1000")
local n = 0
for _ in big:rows() do n = n + 1 end
T.eq(n, 2000, "the user's own SQL runs as written")
-- and may call any function
T.eq(skein.df.from_sql("SELECT skein('Text.Upper', 'ada') AS v"):rows()().v, "ADA",
     "skein() in the user's SQL")
skein.set_option("sql_max_rows", "1000000")

-- generated SQL may call what it was allowed, and nothing else
err = T.raises("no functions allowed", function()
  return sales:ai_transform("shout the depts", { repairs = 0 })
end)
T.match(err and err.message, "refused", "refused at the check")
local loud = sales:ai_transform("shout the depts", { functions = { "Text.Upper" } })
T.eq(loud:rows()().loud, "GARDEN", "allowed function")
-- a transform of it that allows nothing cannot call, even through the view
err = T.raises("nothing allowed over it", function()
  return loud:ai_transform("lower them", { repairs = 0 })
end)
T.match(err and err.message, "refused", "the second SQL is refused")
-- one that allows Text.Lower meets the first view's grant (Text.Upper
-- only): the statement may call what both allow, which is nothing
local quiet = loud:ai_transform("lower them", { functions = { "Text.Lower" } })
err = T.raises("grants meet", function() return quiet:rows()() end)
T.match(err and err.message, "Text.Upper is not allowed", "the inner view's call is held to both")
-- the user's SQL over a generated view holds to that view's grant
err = T.raises("user SQL over generated SQL", function()
  return loud:sql("SELECT skein('Text.Lower', loud) AS q FROM {df}"):rows()()
end)
T.match(err and err.message, "Text.Lower is not allowed", "the view's grant applies")

-- the instruction cache keeps a query once a read of it ran to its end,
-- and drops it when a later read fails
local cache = assert(os.getenv("SKEIN_CACHE"), "SKEIN_CACHE must name a cache file")
assert(cache ~= "off", "this test needs the cache")
skein.set_option("sql_max_rows", "100")
local first = sales:ai_transform("count forever")
io.output("/dev/null")
first:show(3) -- LIMIT 3: a whole read, within the limits
io.output():close()
io.output(shown)
local calls = skein.usage().calls
local again = sales:ai_transform("count forever")
T.eq(skein.usage().calls - calls, 0, "kept once read whole")
T.raises("a read past the limit", function() for _ in again:rows() do end end)
calls = skein.usage().calls
sales:ai_transform("count forever")
T.eq(skein.usage().calls - calls, 1, "dropped once a read failed")
skein.set_option("sql_max_rows", "1000000")

T.finish()
