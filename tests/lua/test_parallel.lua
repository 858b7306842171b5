-- skein.parallel: branches as coroutines whose model calls are in flight
-- together on the one event loop.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_model("scripted:fixtures/rules.json")
skein.set_option("quiet", "1")
skein.load_skills("fixtures/skills")

-- Probe.Start runs when Sem.Slow's template renders, just before its model
-- call (a 100 ms scripted delay) starts.
local started, inflight, max_inflight = 0, 0, 0
skein.define("Probe.Start", function(a)
  started = started + 1
  inflight = inflight + 1
  if inflight > max_inflight then max_inflight = inflight end
  return a.input
end)

local function reset() started, inflight, max_inflight = 0, 0, 0 end

-- 200 branches, each one slow model call
local N = 200
local started_at_first_finish
local branches = {}
for i = 1, N do
  branches[i] = function()
    local r = skein.invoke("Sem.Slow", "b" .. i)
    inflight = inflight - 1
    started_at_first_finish = started_at_first_finish or started
    return r .. " " .. i
  end
end
local results = skein.parallel(branches)
T.eq(#results, N, "one result per branch")
local ordered = true
for i = 1, N do
  if results[i] ~= "slow done " .. i then ordered = false end
end
T.check(ordered, "results come back in branch order")
T.eq(started, N, "every branch started")
T.eq(started_at_first_finish, N, "all branches were in flight before the first finished")
T.eq(max_inflight, N, "all calls overlapped")

-- {max = N} bounds concurrency
reset()
started_at_first_finish = nil
results = skein.parallel(branches, { max = 10 })
T.eq(#results, N, "bounded: every result")
T.eq(results[N], "slow done " .. N, "bounded: last result")
T.check(max_inflight <= 10, "bounded: at most 10 in flight, saw " .. max_inflight)
T.eq(max_inflight, 10, "bounded: 10 in flight at the peak")
T.eq(started_at_first_finish, 10, "bounded: 10 started before the first finished")

-- {name, vars} pairs and plain functions mix
results = skein.parallel({
  { "Text.Upper", "abc" },
  { "Sem.Summ", { input = "x" } },
  function() return 7 end,
  function() return skein.invoke("Lua.Shout", "hi") end,
})
T.eq(results[1], "ABC", "pair with a string input")
T.eq(results[2], "SUMMARY", "pair with a vars table")
T.eq(results[3], 7, "a plain function's value")
T.eq(results[4], "HI!", "a function invoking a native")

-- an empty list
T.eq(#skein.parallel({}), 0, "no branches, no results")

-- 1000 branches, no threads
reset()
local big = {}
for i = 1, 1000 do big[i] = { "Sem.Slow", "n" .. i } end
results = skein.parallel(big)
T.eq(#results, 1000, "1000 branches")
T.eq(results[1000], "slow done", "1000th result")
T.eq(max_inflight, 1000, "1000 calls in flight on one loop")

-- errors: all branches finish, then the lowest-numbered error is raised
local finished = 0
local e = T.raises("branch error", skein.parallel, {
  function() local r = skein.invoke("Sem.Slow", "a"); finished = finished + 1; return r end,
  function() return skein.invoke("Sem.Fail", "b") end,
  function() error("plain failure") end,
  function() local r = skein.invoke("Sem.Slow", "d"); finished = finished + 1; return r end,
})
T.eq(finished, 2, "other branches ran to the end")
T.check(skein.is_error(e), "the error is a skein error table")
T.eq(e.kind, "model", "the first failing branch's error")
T.eq(e["function"], "Sem.Fail", "its function")
T.eq(e.http_status, 500, "its http_status")

e = T.raises("plain error in a branch", skein.parallel, {
  function() return 1 end,
  function() error("plain failure") end,
})
T.eq(e.kind, "script", "a plain Lua error becomes a script error")
T.match(e.message, "test_parallel%.lua:%d+: plain failure", "with file:line")

-- pcall inside a branch works across the yield
results = skein.parallel({
  function()
    local ok, err = pcall(skein.invoke, "Sem.Fail", "x")
    return ok and "no" or err.kind
  end,
  function() return skein.invoke("Sem.Slow", "y") end,
})
T.eq(results[1], "model", "pcall in a branch catches the structured error")
T.eq(results[2], "slow done", "the other branch")

-- a coroutine.yield inside a branch is just a pause
results = skein.parallel({
  function() coroutine.yield(); return "a" end,
  function() return "b" end,
})
T.eq(results[1], "a", "branch that yields on its own")

-- nested parallel
results = skein.parallel({
  function()
    local r = skein.parallel({ { "Text.Upper", "x" }, { "Sem.Slow", "y" } })
    return r[1] .. r[2]
  end,
  { "Sem.Slow", "z" },
})
T.eq(results[1], "Xslow done", "nested parallel")
T.eq(results[2], "slow done", "outer branch beside a nested parallel")

-- a branch's template calls a Lua native that invokes (runs synchronously)
results = skein.parallel({ { "Sem.Nest", "q" }, { "Sem.Nest", "r" } })
T.eq(results[1], "Outer: SUMMARY", "nested call inside a branch")
T.eq(results[2], "Outer: SUMMARY", "nested call inside a branch (2)")

-- streaming inside a branch
local chunks = {}
results = skein.parallel({
  function()
    return skein.invoke("Sem.Summ", "x", { stream = function(c) chunks[#chunks + 1] = c end })
  end,
  { "Sem.Slow", "w" },
})
T.eq(results[1], "SUMMARY", "streamed branch result")
T.eq(table.concat(chunks), "SUMMARY", "branch stream chunks")
local e2 = T.raises("invoke inside a stream function", skein.invoke, "Sem.Summ", "x",
  { stream = function() skein.invoke("Text.Upper", "no") end })
T.match(e2.message, "cannot run inside a stream function", "waiting is refused in a stream function")

-- misuse
T.raises("not a table", skein.parallel, 5)
T.raises("bad branch", skein.parallel, { 5 })
T.raises("bad max", skein.parallel, {}, { max = 0 })

T.finish()
