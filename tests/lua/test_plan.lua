-- Plans and agents from Lua: skein.plan, plan objects, hand-written plans,
-- resuming after clarification, skein.agent with on_step.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_model("scripted:fixtures/planner.json")
skein.set_option("quiet", "1")

local plan = skein.plan("shout it", { functions = { "Text.Upper", "Text.Concat" } })
T.match(plan:text(), "1%. Text%.Upper%(input=%$input%)", "plan text")
T.match(tostring(plan), "# goal: shout it", "tostring is the text")
T.match(plan:dot(), "s1 %-> s2", "dot edge")
T.eq(plan:run({ input = "hey" }), "HEY!", "plan runs")
local steps = plan:steps()
T.eq(#steps, 2, "two steps")
T.eq(steps[1]["function"], "Text.Upper", "step function")
T.eq(steps[2].deps[1], 1, "step 2 depends on step 1")
T.eq(steps[2].state, "done", "state")
T.eq(steps[1].output, "HEY", "output")
plan:close()
T.raises("closed plan", function() return plan:text() end)

-- hand-written, with a step that asks, and resuming
skein.prompt("P.Ask", "ask {{$input}}\nClarified: {{$clarification}}")
local counted = 0
skein.define("P.Count", function(args) counted = counted + 1 return "n" .. counted end)
local p = skein.load_plan("1. P.Count(input=\"x\")\n2. P.Ask(input=$1)\n3. Text.Concat(input=$1, input2=$2)\n", "ask.plan")
local e = T.raises("uncertain step", p.run, p, {})
T.eq(e.kind, "uncertain", "kind")
T.eq(e.plan_step, 2, "plan_step")
T.eq(e.plan_line, 2, "plan_line")
T.eq(e.question, "Which colour?", "question")
T.eq(p:run({ clarification = "red" }), "n1the red one", "resumed")
T.eq(counted, 1, "finished steps are not re-run")

e = T.raises("bad plan", skein.load_plan, "1. No.Such()\n", "x.plan")
T.eq(e.kind, "plan", "plan kind")
T.match(e.message, "x%.plan:1:", "with the line")

-- agent
local seen = {}
local answer = skein.agent{ goal = "make hello loud", functions = { "Text.Upper" },
  max_steps = 4, on_step = function(text) seen[#seen + 1] = text end }
T.eq(answer, "HELLO it is", "agent answer")
T.check(#seen >= 2, "on_step called per step")
T.match(table.concat(seen), "Observation: HELLO", "observation shown")
e = T.raises("agent limit", skein.agent, { goal = "make hello loud", functions = { "Text.Upper" }, max_steps = 1 })
T.eq(e.kind, "limit", "limit kind")
e = T.raises("on_step error", skein.agent, { goal = "make hello loud", functions = { "Text.Upper" },
  on_step = function() error("boom") end })
T.match(tostring(e.message or e), "boom", "on_step errors surface")

T.finish()
