-- demo.lua: a tour of skein in a few steps.
--
--   skein run scripts/demo.lua          (or: make demo)
--
-- It lists the skills, then composes three of them: a native Lua function,
-- a semantic function, and a semantic function whose template nests both.
-- With SKEIN_MODEL, OPENAI_API_KEY or OPENAI_BASE_URL set it uses that
-- model; otherwise the bundled scripted model, which answers from canned
-- replies so the demo runs offline.
local skein = require("skein")

local here = (debug.getinfo(1, "S").source:match("^@(.*/)")) or "./"

if skein.model() then
  print("model: " .. skein.model())
else
  skein.set_model("scripted:" .. here .. "demo-model.json")
  print("model: the bundled scripted model (canned replies, offline);")
  print("       set SKEIN_MODEL, OPENAI_API_KEY or OPENAI_BASE_URL for a real one")
end
skein.load_skills(here .. "skills")
-- Cache every answer: run the demo twice and the second run makes no
-- model calls (the response cache is at $SKEIN_CACHE or ~/.cache/skein).
skein.set_policy({ cache = true })

local function step(title)
  print("")
  print("== " .. title)
end

step("1. the skills skein knows (skein skills lists them in full)")
local by_skill, order = {}, {}
for _, f in ipairs(skein.skills()) do
  if not by_skill[f.skill] then by_skill[f.skill] = {} order[#order + 1] = f.skill end
  table.insert(by_skill[f.skill], f.name)
end
for _, skill in ipairs(order) do
  print(string.format("  %-10s %s", skill, table.concat(by_skill[skill], ", ")))
end

-- A native function defined right here, in Lua.
skein.define("Demo.Exclaim", {
  description = "Adds emphasis to a line",
  parameters = { { name = "input", description = "The line" } },
  run = function(args) return (args.input:gsub("%s+$", "")) .. "!" end,
})

local article = [[
After a petition signed by four hundred students, the town council voted on
Tuesday to keep the public library open until midnight on weekdays. The new
hours start in March. Staff will be added from the council's culture budget,
and the reading rooms on the first floor will stay quiet-only after 9 pm.]]

step("2. a semantic function: Writer.Summarize")
local summary = skein.invoke("Writer.Summarize", article)
print(summary)

step("3. nested: Demo.Headline's template calls Text.Upper and Writer.Summarize")
print("template: " .. here .. "skills/Demo/Headline/skprompt.txt")
local headline = skein.invoke("Demo.Headline", { input = article, topic = "the library" })
print(headline)

step("4. native Lua: Demo.Exclaim")
local loud = skein.invoke("Demo.Exclaim", headline)
print(loud)

step("5. two semantic calls in parallel on one thread: translations")
local fr, de = table.unpack(skein.parallel({
  function() return skein.invoke("Writer.Translate", { input = loud, language = "French" }) end,
  function() return skein.invoke("Writer.Translate", { input = loud, language = "German" }) end,
}))
print("French: " .. fr)
print("German: " .. de)

local u = skein.usage()
print("")
print(string.format("%d model calls, %d answered from the cache, %d prompt tokens, %d completion tokens",
  u.calls, u.cache_hits, u.prompt_tokens, u.completion_tokens))
