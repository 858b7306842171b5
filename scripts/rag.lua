-- rag.lua: retrieval-augmented answers with no other service: documents
-- go into skein's text memory (SQLite, FTS5), and a prompt recalls the
-- ones a question needs with Semantic Kernel's {{recall}}.
--
--   skein run scripts/rag.lua
--
-- With no model configured it uses the bundled scripted model, which
-- answers from canned replies, so it runs offline.  The memory ranks by
-- BM25 unless an embeddings model is named (SKEIN_EMBEDDINGS, or
-- "embeddings" in the config file); then by cosine similarity.  This demo
-- keeps its memory in the process (memory "off"): delete that line to keep
-- it in your memory file (see the README's "Text memory").
local skein = require("skein")
local here = (debug.getinfo(1, "S").source:match("^@(.*/)")) or "./"
if skein.model() then
  print("model: " .. skein.model())
else
  skein.set_model("scripted:" .. here .. "rag-model.json")
  print("model: the bundled scripted model (canned replies, offline)")
end
skein.set_option("memory", "off")

print("\n== 1. save the handbook, one memory per passage")
local handbook = {
  leave = "Parental leave is 16 weeks at full pay, for every parent.",
  holidays = "Everyone has 28 days of paid holiday a year, plus public holidays.",
  expenses = "Expenses are paid back within 10 days of a claim with receipts.",
  laptops = "Staff get a new laptop every three years; it stays company property.",
  remote = "Remote work is allowed up to three days a week with a manager's agreement.",
}
local keys = {}
for key in pairs(handbook) do keys[#keys + 1] = key end
table.sort(keys)
for _, key in ipairs(keys) do
  skein.invoke("TextMemoryPlugin.Save", { input = handbook[key], key = key, collection = "handbook" })
end
print(#keys .. " passages saved in collection \"handbook\"")

print("\n== 2. a question: the prompt recalls what it needs")
-- the prompt is an SK prompt, as it would be in skprompt.txt
skein.prompt("Handbook.Answer", [[
Answer the question from these passages of the staff handbook only. If
they do not hold the answer, say so.

Passages: {{recall $input collection='handbook' limit='2'}}

Question: {{$input}}
Answer:]], '{"description": "Answers a question from the staff handbook", "completion": {"temperature": 0}}')

local function ask(question)
  local hits = skein.memory.recall(question, { collection = "handbook", limit = 2 })
  print("question: " .. question)
  for i, h in ipairs(hits) do
    print(string.format("  recalled %d: %s (%s, %.2f)", i, h.text, h.key, h.relevance))
  end
  if #hits == 0 then print("  recalled nothing") end
  print("answer:   " .. skein.invoke("Handbook.Answer", question))
end
ask("How many weeks of parental leave do parents get?")

print("\n== 3. a question the handbook does not answer: what is recalled is not about it")
ask("Is there a staff canteen?")
