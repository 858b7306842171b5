-- Structured output as tables, the kernel-wide policy, limits, and the
-- usage summary from Lua.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
local cache = assert(os.getenv("SKEIN_CACHE"))
for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(cache .. suffix) end
skein.set_model("scripted:fixtures/models.json")
skein.set_option("quiet", "1")

skein.prompt("M.Person", "person", [[{"uncertainty": false, "output": {"json_schema":
  {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
   "required": ["name", "age"]}}}]])
local p = skein.invoke("M.Person")
T.eq(type(p), "table", "a JSON answer arrives as a table")
T.eq(p.name, "Ada", "field")
T.eq(p.age, 7, "number field")
T.eq(p.tags[2], "y", "array field")
skein.prompt("M.Plain", "plain")
T.eq(skein.invoke("M.Plain"), "just text", "other answers stay text")
local e = T.raises("shape mismatch", skein.invoke, "M.Plain", nil,
  { policy = { output = { json_schema = { type = "object" } }, uncertainty = false } })
T.eq(e.kind, "data", "a wrong shape after retries is kind data")

-- the kernel-wide policy: cache everything
skein.set_policy({ cache = true })
local before = skein.usage()
skein.invoke("M.Plain")
skein.invoke("M.Plain")
local after = skein.usage()
T.eq(after.calls - before.calls, 1, "second call from the cache")
T.eq(after.cache_hits - before.cache_hits, 1, "counted as a hit")
T.raises("bad policy", skein.set_policy, { cache = "sometimes" })
skein.set_policy(nil)

local u = skein.usage()
T.check(u.wall_ms >= 0, "wall time")
T.eq(#u.models, 1, "one model used")
T.match(u.models[1].model, "^scripted:", "per-model usage")
T.check(u.models[1].calls >= 3, "per-model calls")

skein.set_limits("scripted", { inflight = 2, rpm = 1000 })
T.eq(skein.invoke("M.Plain"), "just text", "runs under limits")
T.raises("bad limits", skein.set_limits, "scripted", { rpm = -1 })
T.finish()
