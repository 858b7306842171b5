-- Uncertainty as an exception: raised by detection or from code, carried
-- unchanged through templates, Lua natives and parallel branches, handled
-- by skein.clarify; review from Lua; per-call policies as tables.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_model("scripted:fixtures/unsure.json")
skein.set_option("quiet", "1")

-- three levels: a template (Outer) calls a Lua native (Mid) that invokes
-- a semantic function (Deep) whose reply asks the user back
skein.prompt("L.Deep", "Deep: {{$input}}")
skein.define("L.Mid", function(args) return "mid(" .. skein.invoke("L.Deep", args.input) .. ")" end)
skein.prompt("L.Outer", "Fine: {{L.Mid $input}}")

local e = T.raises("asking back deep down", skein.invoke, "L.Outer", "the report")
T.check(skein.is_error(e), "an error table")
T.eq(e.kind, "uncertain", "kind")
T.eq(e["function"], "L.Deep", "raised in L.Deep")
T.eq(table.concat(e.chain, ","), "L.Deep,L.Mid,L.Outer", "chain through template, Lua, template")
T.eq(e.question, "Do you mean the Q3 report?", "the question travels")
T.match(e.reason, "^asks back", "the reason")
T.match(e.output, "not sure which report", "the raw output")

-- pcall inside the native does not lose it: a native that catches and
-- re-raises keeps every field
skein.define("L.Catch", function(args)
  local ok, err = pcall(skein.invoke, "L.Deep", args.input)
  assert(not ok)
  error(err, 0)
end)
e = T.raises("re-raised", skein.invoke, "L.Catch", "x")
T.eq(e.kind, "uncertain", "kind after re-raise")
T.eq(e.question, "Do you mean the Q3 report?", "question after re-raise")

-- raised from code
skein.define("L.Pick", function(args)
  skein.uncertain{ reason = "two files match", question = "a.txt or b.txt?", confidence = 0.3 }
end)
e = T.raises("skein.uncertain", skein.invoke, "L.Pick", "x")
T.eq(e.kind, "uncertain", "kind from code")
T.eq(e.question, "a.txt or b.txt?", "question from code")
T.eq(e.reason, "two files match", "reason from code")
T.eq(e.confidence, 0.3, "confidence from code")
T.eq(e["function"], "L.Pick", "function from code")

-- clarify: ask is called with the error, its answer lands in
-- {{$clarification}} and the call runs again
skein.prompt("L.Report", "Report: {{$input}}\nClarified: {{$clarification}}")
local asked = {}
local out = skein.clarify("L.Report", { input = "revenue" }, function(err)
  asked[#asked + 1] = err.question
  return "the Q3 numbers"
end)
T.eq(out, "Q3 revenue rose 12%.", "answered after clarification")
T.eq(#asked, 1, "asked once")
T.eq(asked[1], "Which quarter?", "with the model's question")
-- giving up re-raises the original
e = T.raises("no answer", skein.clarify, "L.Report", "revenue", function() return nil end)
T.eq(e.kind, "uncertain", "giving up re-raises")
-- other errors are not swallowed
e = T.raises("other errors pass", skein.clarify, "No.Such", "x", function() return "y" end)
T.eq(e.kind, "not_found", "not_found passes through clarify")

-- through parallel branches: the branch's uncertainty is the one raised
skein.prompt("L.SlowUnsure", "Slow unsure: {{$input}}")
skein.prompt("L.SlowSure", "Slow sure: {{$input}}")
e = T.raises("parallel", skein.parallel, {
  function() return skein.invoke("L.SlowSure", "a") end,
  function() return skein.invoke("L.SlowUnsure", "b") end,
})
T.eq(e.kind, "uncertain", "uncertain out of a parallel branch")
T.eq(e.question, "Which one?", "question out of a parallel branch")

-- per-call policy as a table: the signal off for this call only
T.eq(skein.invoke("L.Deep", "x", { policy = { uncertainty = { asks_back = false } } }),
  "I'm not sure which report you mean. Do you mean the Q3 report?", "asks-back off per call")
T.raises("asks-back back on", skein.invoke, "L.Deep", "x")
-- hedge phrases are an opt-in
e = T.raises("hedging opted in", skein.invoke, "L.Deep", "x",
  { policy = { uncertainty = { asks_back = false, hedging = true } } })
T.match(e.reason, "^hedging", "the hedging reason")
T.raises("bad policy value", skein.invoke, "L.Deep", "x", { policy = { review = print } })

-- review from Lua, with a reviewer of our own
skein.prompt("L.Review", "REVIEW {{$task}} {{$output}}", '{"uncertainty": false}')
local ok, why = skein.review("All good.", { task = "say it is fine", reviewer = "L.Review" })
T.eq(ok, true, "review passes")
T.eq(why, nil, "no critique on a pass")
ok, why = skein.review("meh", { reviewer = "L.Review" })
T.eq(ok, false, "review fails")
T.eq(why, "it says nothing", "critique")

local u = skein.usage()
T.check(u.uncertain >= 5, "usage counts uncertain replies")
T.eq(u.reviews, 2, "usage counts reviews")

T.finish()
