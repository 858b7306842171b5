-- Loading native Lua skills: errors carry file:line and the right kind.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_option("quiet", "1")

-- one bad skill fails only itself: load_skills loads what loads and
-- returns the problems of what did not, each with its file and line
local probs = skein.load_skills("fixtures/broken_syntax")
T.eq(#probs, 1, "one problem")
local p = probs[1] or {}
T.eq(p.kind, "script", "syntax error kind")
T.eq(p.code, 9, "syntax error code")
T.match(p.message, "broken_syntax/Syntax/skill%.lua:4:", "syntax error has file:line")
T.match(p.file, "broken_syntax/Syntax/skill%.lua$", "the file at fault")
T.eq(p.line, 4, "its line")
T.eq(p.what, "Syntax", "the skill skipped")

probs = skein.load_skills("fixtures/broken_result")
T.eq((probs[1] or {}).kind, "script", "non-table kind")
T.match((probs[1] or {}).message, "must return a table", "non-table message")

probs = skein.load_skills("fixtures/broken_run")
T.match((probs[1] or {}).message, "broken_run/Init/skill%.lua:3: attempt to index",
        "load-time runtime error has file:line")

-- every problem so far, and a folder that cannot be read still raises
T.eq(#skein.skill_problems(), 3, "skill_problems lists them all")
local e = T.raises("missing folder", skein.load_skills, "fixtures/no_such_folder")
T.eq(e.kind, "io", "a missing folder is an io error")
local _, clean = pcall(skein.load_skills, "fixtures/skills")
T.eq(type(clean) == "table" and #clean, 0, "a clean load returns an empty table")

-- the good skills still load after failures
skein.load_skills("fixtures/skills")
T.eq(skein.invoke("Lua.Shout", "ok"), "OK!", "good skills load afterwards")
local bad
for _, f in ipairs(skein.skills()) do
  if f.skill == "Syntax" or f.skill == "NotTable" then bad = f end
end
T.eq(bad, nil, "a broken skill registers nothing")

-- a function's prompt as invoke renders it, with its own defaults
skein.prompt("R.Greet", "Hello {{$who}} from {{Text.Upper $town}}",
             '{"input_variables": [{"name": "who", "default": "you"}, {"name": "town"}]}')
T.eq(skein.render_function("R.Greet", { town = "oslo" }), "Hello you from OSLO", "render_function: defaults, blocks run")
T.eq(skein.render_function("R.Greet", { who = "Ada", town = "oslo" }, { no_calls = true }),
     "Hello Ada from {{Text.Upper $town}}", "render_function: no_calls")
e = T.raises("render_function of an unknown function", skein.render_function, "R.Gret", {})
T.eq(e.kind, "not_found", "render_function: unknown is not_found")
e = T.raises("render_function of a native", skein.render_function, "Text.Upper", {})
T.eq(e.kind, "usage", "render_function: a native has no prompt")

-- the path of a Lua skill is its folder
for _, f in ipairs(skein.skills()) do
  if f.full_name == "Lua.Shout" then T.match(f.path, "fixtures/skills/Lua$", "path is the skill folder") end
end

-- a skill table through skein.skill with a bad entry
e = T.raises("bad entry", skein.skill, "Mixed", { Good = function() return "g" end, Bad = 3 })
T.match(e, "Mixed.Bad", "names the bad entry")
T.raises("parameters must be an array", skein.define, "P.Q", { run = function() end, parameters = 3 })
T.raises("parameter without a name", skein.define, "P.Q", { run = function() end, parameters = { {} } })

T.finish()
