-- The text memory from Lua (skein.memory) and through the built-in
-- TextMemoryPlugin skill, as SK prompts call it: SK's names, parameters,
-- defaults and output formats, on BM25 (no embeddings model here; the
-- embeddings side is in tests/integration/test_coreplugins.c).  The
-- memory is SKEIN_MEMORY=off: this process only.
local T = dofile("fixtures/harness.lua")
local skein = require("skein")
skein.set_option("quiet", "1")
skein.set_option("memory", "off")

-- skein.memory
skein.memory.save("The budget for 2024 is 100,000 euros.", "b2024", "finances")
skein.memory.save("Savings from 2023 are 50,000 euros.", "s2023", "finances")
skein.memory.save("I invested in solar panels and index funds.", "inv", "finances")
skein.memory.save("My cat is called Budget.", "pet")
local hits = skein.memory.recall("What are my investments?", { collection = "finances" })
T.eq(#hits, 1, "recall: limit 1 by default")
T.eq(hits[1].key, "inv", "recall: the best memory")
T.eq(hits[1].collection, "finances", "recall: its collection")
T.eq(hits[1].text, "I invested in solar panels and index funds.", "recall: its text")
T.check(hits[1].relevance > 0 and hits[1].relevance < 1, "recall: a relevance in (0, 1)")
hits = skein.memory.recall("euros savings", { collection = "finances", limit = 5 })
T.eq(#hits, 2, "recall: only what matches")
T.eq(hits[1].key, "s2023", "recall: best first")
T.eq(#skein.memory.recall("budget"), 1, "recall: the generic collection by default")
T.eq(skein.memory.recall("budget")[1].key, "pet", "recall: generic")
T.eq(#skein.memory.recall("euros", { collection = "finances", limit = 5, relevance = 1 }), 0,
     "recall: a relevance floor")
T.eq(skein.memory.get("inv", "finances"), "I invested in solar panels and index funds.", "get")
T.eq(skein.memory.get("nope", "finances"), nil, "get: nil when there is none")
skein.memory.remove("pet")
T.eq(skein.memory.get("pet"), nil, "remove")

local err = T.raises("limit 0", skein.memory.recall, "x", { limit = 0 })
T.check(skein.is_error(err) and err.kind == "usage", "a bad limit is a usage error")
T.match(err.message, "limit 0 is not from 1 to 100", "it says which")
err = T.raises("empty key", skein.memory.save, "text", "  ")
T.eq(err.kind, "usage", "an empty key")
err = T.raises("bad argument", skein.memory.recall, "x", { limit = "many" })
T.check(not skein.is_error(err), "misuse raises an ordinary error")
err = T.raises("big text", skein.memory.save, string.rep("x", (1 << 20) + 1), "k")
T.eq(err.kind, "too_large", "a text past 1 MiB")

-- TextMemoryPlugin, as SK prompts call it
T.eq(skein.invoke("TextMemoryPlugin.Save", { input = "Paris is the capital of France.", key = "fr" }), "",
     "Save returns nothing")
T.eq(skein.invoke("textmemoryplugin.recall", "capital of France"), "Paris is the capital of France.",
     "Recall with limit 1: the text itself")
T.eq(skein.invoke("TextMemoryPlugin.Recall", { input = "euros", collection = "finances", limit = "5" }),
     '["Savings from 2023 are 50,000 euros.","The budget for 2024 is 100,000 euros."]',
     "Recall with a larger limit: a JSON array of texts, best first")
T.eq(skein.invoke("TextMemoryPlugin.Recall", { input = "volcanoes" }), "", "Recall: nothing found")
T.eq(skein.invoke("TextMemoryPlugin.Recall", { input = "euros", collection = "finances", limit = "5",
                                               relevance = "1" }), "", "Recall: relevance")
-- SK Python's parameter names
skein.invoke("TextMemoryPlugin.save", { input = "ignored", text = "Berlin is in Germany.", key = "de" })
T.eq(skein.invoke("TextMemoryPlugin.recall", { input = "something else", ask = "Germany" }),
     "Berlin is in Germany.", "ask and text, SK Python's names")
T.eq(skein.invoke("TextMemoryPlugin.Retrieve", { key = "de" }), "Berlin is in Germany.", "Retrieve")
T.eq(skein.invoke("TextMemoryPlugin.Retrieve", { key = "none" }), "", "Retrieve: nothing")
skein.invoke("TextMemoryPlugin.Remove", { key = "de" })
T.eq(skein.invoke("TextMemoryPlugin.Retrieve", { key = "de" }), "", "Remove")
-- JSON text as SK gives it: quotes, backslashes and newlines escaped
skein.memory.save('He said "hi"\\n and\nleft', "q", "quotes")
T.eq(skein.invoke("TextMemoryPlugin.Recall", { input = "said", collection = "quotes", limit = "2" }),
     '["He said \\"hi\\"\\\\n and\\nleft"]', "JSON escapes")

for _, case in ipairs({
  { { input = "" }, "the question is empty" },
  { { input = "x", limit = "0" }, "limit must be a whole number from 1 to 100, got \"0\"" },
  { { input = "x", limit = "2.5" }, "limit must be a whole number" },
  { { input = "x", limit = "101" }, "limit must be a whole number" },
  { { input = "x", relevance = "high" }, "relevance must be a number from 0 to 1" },
  { { input = "x", relevance = "2" }, "relevance must be a number from 0 to 1" },
}) do
  local e = T.raises("bad Recall", skein.invoke, "TextMemoryPlugin.Recall", case[1])
  T.eq(e.kind, "usage", "bad Recall arguments: usage")
  T.match(e.message, case[2]:gsub("%p", "%%%0"), "bad Recall arguments: " .. case[2])
end
local e = T.raises("Save without key", skein.invoke, "TextMemoryPlugin.Save", { input = "x" })
T.match(e.message, "the key is empty", "Save needs a key")

-- SK's memory prompts: bare names, positional and named arguments
T.eq(skein.render("{{recall 'capital of France'}} What is the capital of France?"),
     "Paris is the capital of France. What is the capital of France?", "{{recall 'text'}}")
T.eq(skein.render("{{recall $input}}", { input = "my savings" }), "", "{{recall $input}}: another collection")
T.eq(skein.render("{{TextMemoryPlugin.recall $q collection='finances'}}", { q = "savings" }),
     "Savings from 2023 are 50,000 euros.", "named collection")
skein.render("{{save 'Rome is in Italy.' key='it'}}")
T.eq(skein.memory.get("it"), "Rome is in Italy.", "{{save ... key=...}}")

-- a plan is the model's: it may save only when allowed to
skein.set_model("scripted:fixtures/rules.json")
local perr = T.raises("plan outside its grant", skein.load_plan,
                      "1. TextMemoryPlugin.Save(input=\"planted\", key=\"evil\")\n", "p.plan",
                      { functions = { "Text.Upper" } })
T.match(tostring(perr.message), "TextMemoryPlugin.Save is not allowed here",
        "a plan cannot save unless allowed")
perr = T.raises("a bare name outside its grant", skein.load_plan,
                "1. save(input=\"planted\", key=\"evil\")\n", "p.plan", { functions = { "Text.Upper" } })
T.match(tostring(perr.message), "TextMemoryPlugin.Save is not allowed here",
        "nor by its bare name")
local plan = skein.load_plan("1. save(input=\"allowed\", key=\"ok\")\n", "p.plan",
                             { functions = { "TextMemoryPlugin.Save" } })
plan:run()
T.eq(skein.memory.get("ok"), "allowed", "a plan allowed to save, by the bare name")
T.eq(skein.memory.get("evil"), nil, "nothing was saved")

-- the clock the time functions read
skein.set_option("now", "2031-01-13T05:15:07Z")
T.eq(skein.now(), 1926047707, "skein.now() reads the fixed clock")
skein.set_option("now", "")
T.check(math.abs(skein.now() - os.time()) <= 2, "skein.now() is the system clock again")

T.finish()
