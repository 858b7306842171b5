-- skein.invoke, nesting across Lua and templates, error tables, define,
-- skills(), render, streaming.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")

T.eq(type(skein.version), "string", "version")
T.eq(skein.model(), nil, "no model configured at first")
skein.set_model("scripted:fixtures/rules.json")
T.eq(skein.model(), "scripted:fixtures/rules.json", "model()")
skein.set_option("quiet", "1")
skein.load_skills("fixtures/skills")

-- native and semantic
T.eq(skein.invoke("Text.Upper", "abc"), "ABC", "built-in native")
T.eq(skein.invoke("Text.Upper", { input = "xyz" }), "XYZ", "vars table")
T.eq(skein.invoke("Lua.Shout", { INPUT = "hey" }), "HEY!", "args are case-insensitive")
T.eq(skein.invoke("Sem.Summ", "long text"), "SUMMARY", "semantic via scripted model")
T.eq(skein.invoke("Sem.Summ", 42), "SUMMARY", "a number as input")

-- nested: template -> Lua native -> semantic
T.eq(skein.invoke("Sem.Nest", "x"), "Outer: SUMMARY", "template calls Lua calls semantic")

-- define, both shapes
skein.define("My.Twice", function(args) return args.input .. args.input end)
T.eq(skein.invoke("My.Twice", "ab"), "abab", "define(function)")
skein.define("My.Greet", {
  description = "Greets someone.",
  parameters = { { name = "name", description = "Who.", default = "world" }, "input" },
  run = function(args) return "hello " .. (args.name or "?") end,
})
T.eq(skein.invoke("My.Greet", { name = "ann" }), "hello ann", "define(table)")
skein.skill("Calc", {
  Add = function(a) return tonumber(a.x) + tonumber(a.y) end,
  Nil = function() return nil end,
  Bool = function() return true end,
})
T.eq(skein.invoke("Calc.Add", { x = 2, y = 3 }), "5", "number result becomes text")
T.eq(skein.invoke("Calc.Nil"), "", "nil result is empty")
T.eq(skein.invoke("Calc.Bool"), "true", "boolean result")
-- redefining replaces
skein.define("My.Twice", function(args) return "v2" end)
T.eq(skein.invoke("My.Twice", "ab"), "v2", "define replaces")

-- misuse raises plain errors
local e = T.raises("define without a dot", skein.define, "NoDot", function() end)
T.check(type(e) == "string" and e:match("Skill.Function"), "define error message")
T.raises("define a number", skein.define, "A.B", 42)
T.raises("define a table without run", skein.define, "A.B", { description = "x" })
T.raises("bad function name", skein.define, "A.B-c", function() end)
T.raises("invoke without a name", skein.invoke)
T.raises("invoke with bad vars", skein.invoke, "Text.Upper", true)
T.raises("invoke with bad opts", skein.invoke, "Text.Upper", "x", { stream = 1 })

-- skills()
local found
for _, f in ipairs(skein.skills()) do
  if f.full_name == "My.Greet" then found = f end
end
T.check(found ~= nil, "skills() lists My.Greet")
if found then
  T.eq(found.skill, "My", "skills().skill")
  T.eq(found.name, "Greet", "skills().name")
  T.eq(found.description, "Greets someone.", "skills().description")
  T.eq(found.kind, "native", "skills().kind")
  T.eq(#found.parameters, 2, "two parameters")
  T.eq(found.parameters[1].name, "name", "param name")
  T.eq(found.parameters[1].default, "world", "param default")
  T.eq(found.parameters[1].description, "Who.", "param description")
  T.eq(found.parameters[2].name, "input", "param given as a string")
end
local summ
for _, f in ipairs(skein.skills()) do
  if f.full_name == "Sem.Summ" then summ = f end
end
T.eq(summ and summ.kind, "semantic", "semantic kind in skills()")

-- error tables
e = T.raises("unknown function", skein.invoke, "No.Such", "x")
T.check(skein.is_error(e), "unknown function raises an error table")
T.eq(e.kind, "not_found", "not_found kind")

e = T.raises("misspelt function", skein.invoke, "Text.Uper", "x")
T.check(e.message:find("did you mean Text.Upper?", 1, true), "suggests the closest name")

-- semantic functions defined from a script
skein.prompt("My.Ask", "Summarize: {{$input}} {{Text.Upper $input}}",
  '{"description": "asks", "input_variables": [{"name": "input", "default": "d"}]}')
T.eq(skein.invoke("My.Ask", "z"), "SUMMARY", "prompt() defines a semantic function")
T.eq(skein.render("{{My.Ask 'q'}}"), "SUMMARY", "render calls defined functions")
local ask
for _, f in ipairs(skein.skills()) do if f.full_name == "My.Ask" then ask = f end end
T.eq(ask and ask.description, "asks", "prompt() keeps the config's description")
e = T.raises("bad template", skein.prompt, "My.Bad", "x {{ $a $b }}")
T.eq(e.kind, "template", "a template error from prompt()")
T.check(e.message:find("My.Bad:1:", 1, true), "with its position")
e = T.raises("bad config", skein.prompt, "My.Bad", "x", "{ nope")
T.eq(e.kind, "config", "a config error from prompt()")
T.raises("bad name", skein.prompt, "NoDot", "x")

e = T.raises("model error", skein.invoke, "Sem.Fail", "x")
T.eq(e.kind, "model", "model error kind")
T.eq(e.http_status, 500, "http_status")
T.eq(e["function"], "Sem.Fail", "function")
T.match(e.message, "scripted failure", "model error message")
T.eq(tostring(e), "model: " .. e.message, "__tostring")

e = T.raises("nested model error", skein.invoke, "Sem.FailNest", "x")
T.eq(e.kind, "model", "kind survives nesting")
T.eq(e["function"], "Sem.Fail", "innermost function survives nesting")
T.eq(e.http_status, 500, "http_status survives nesting")
T.eq(#e.chain, 3, "chain has every level")
T.eq(e.chain[1], "Sem.Fail", "chain[1]")
T.eq(e.chain[2], "Lua.CallFail", "chain[2]")
T.eq(e.chain[3], "Sem.FailNest", "chain[3]")

e = T.raises("uncertain", skein.invoke, "Sem.Hedge", "x")
T.eq(e.kind, "uncertain", "uncertain kind")

-- an error a script raises keeps its kind through a template level
skein.define("My.Reject", function() skein.error("rejected", "not good enough", { score = 2 }) end)
skein.define("My.Outer", function(a) return skein.invoke("My.Reject", a) end)
e = T.raises("skein.error", skein.invoke, "My.Outer", "x")
T.eq(e.kind, "rejected", "skein.error kind")
T.eq(e.message, "not good enough", "skein.error message")
T.eq(e.score, 2, "extra fields travel")
T.eq(e.chain[1], "My.Reject", "chain from a script error")
T.eq(e.chain[2], "My.Outer", "chain outer")
T.raises("unknown kind", skein.error, "nonsense", "x")
T.check(not skein.is_error("x") and not skein.is_error({ kind = "model" }), "is_error is strict")

-- pcall inside a native catches a structured error and branches on kind
skein.define("My.Fallback", function(a)
  local ok, err = pcall(skein.invoke, "Sem.Fail", a.input)
  if not ok and err.kind == "model" then return "fallback" end
  return "no"
end)
T.eq(skein.invoke("My.Fallback", "x"), "fallback", "pcall within a native")

-- a Lua error in a native shows file:line
e = T.raises("Lua error", skein.invoke, "Bad.Boom", "x")
T.eq(e.kind, "script", "script kind")
T.match(e.message, "skill%.lua:6: kaboom", "file:line of error()")
T.match(e.traceback, "stack traceback", "traceback kept")
e = T.raises("Lua runtime error", skein.invoke, "Bad.Boom", "index")
T.match(e.message, "skill%.lua:5: attempt to index", "file:line of a runtime error")
e = T.raises("table result", skein.invoke, "Bad.Table")
T.match(e.message, "Bad.Table returned a table", "a table is not text")

-- recursion limit across Lua and the invoke path
skein.define("Rec.Self", function(a) return skein.invoke("Rec.Self", a.input) end)
e = T.raises("recursion", skein.invoke, "Rec.Self", "x")
T.eq(e.kind, "recursion", "recursion kind")
skein.set_option("max_depth", "4")
local depth = 0
skein.define("Rec.Count", function(a)
  depth = depth + 1
  return skein.invoke("Rec.Count", a.input)
end)
e = T.raises("recursion at 4", skein.invoke, "Rec.Count", "x")
T.eq(e.kind, "recursion", "recursion kind at max_depth 4")
T.eq(depth, 5, "depths 0..4 ran")
skein.set_option("max_depth", "32")

-- render
T.eq(skein.render("Hi {{$name}} {{Text.Upper $name}}", { name = "bob" }, { no_calls = true }),
  "Hi bob {{Text.Upper $name}}", "render no_calls")
T.eq(skein.render("Hi {{$name}} {{Text.Upper $name}}", { name = "bob" }), "Hi bob BOB", "render with calls")
T.eq(skein.render("{{Sem.Summ $input}}", "x"), "SUMMARY", "render a semantic call")
e = T.raises("template error", skein.render, "ok\n  {{Text.Upper x=abc}}", {}, { origin = "t.txt" })
T.eq(e.kind, "template", "template kind")
T.match(e.message, "^t%.txt:2:%d+: ", "template error carries origin:line:col")
e = T.raises("render call failure", skein.render, "{{Sem.Fail 'x'}}", {})
T.eq(e.kind, "model", "render passes the model error")

-- streaming
local chunks = {}
local out = skein.invoke("Sem.Nest", "s", { stream = function(c) chunks[#chunks + 1] = c end })
T.eq(out, "Outer: SUMMARY", "streamed result")
T.check(#chunks >= 1, "stream function called")
T.eq(table.concat(chunks), out, "chunks add up to the result")
e = T.raises("stream error", skein.invoke, "Sem.Nest", "s", { stream = function() error("stop") end })
T.eq(e.kind, "script", "an error in the stream function is raised")
T.match(e.message, "stop", "stream error message")
T.eq(skein.invoke("Sem.Summ", "x", { model = "scripted:fixtures/rules.json" }), "SUMMARY", "opts.model")

local u = skein.usage()
T.check(u.calls >= 5, "usage counts model calls")
T.check(u.failures >= 1, "usage counts failures")

e = T.raises("set_model without a spec", skein.set_model)
T.check(type(e) == "string", "misuse raises a plain error")

T.finish()
