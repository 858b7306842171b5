-- Loading native Lua skills: errors carry file:line and the right kind.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_option("quiet", "1")

local e = T.raises("syntax error", skein.load_skills, "fixtures/broken_syntax")
T.check(skein.is_error(e), "an error table")
T.eq(e.kind, "script", "syntax error kind")
T.match(e.message, "broken_syntax/Syntax/skill%.lua:4:", "syntax error has file:line")

e = T.raises("not a table", skein.load_skills, "fixtures/broken_result")
T.eq(e.kind, "script", "non-table kind")
T.match(e.message, "must return a table", "non-table message")

e = T.raises("error while loading", skein.load_skills, "fixtures/broken_run")
T.match(e.message, "broken_run/Init/skill%.lua:3: attempt to index", "load-time runtime error has file:line")

-- the good skills still load after failures
skein.load_skills("fixtures/skills")
T.eq(skein.invoke("Lua.Shout", "ok"), "OK!", "good skills load afterwards")
local bad
for _, f in ipairs(skein.skills()) do
  if f.skill == "Syntax" or f.skill == "NotTable" then bad = f end
end
T.eq(bad, nil, "a broken skill registers nothing")

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
