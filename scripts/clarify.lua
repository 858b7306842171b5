-- clarify.lua: uncertainty is an exception.
--
--   skein run scripts/clarify.lua            (answers itself, offline)
--   skein run scripts/clarify.lua --ask      (asks you at the terminal)
--
-- 1. A request the model finds ambiguous raises kind = "uncertain" with the
--    question it would ask; skein.clarify catches it, gets an answer and
--    runs the call again with the answer in {{$clarification}}.
-- 2. An escalation cascade: a function lists two models, cheapest first;
--    the cheap one is unsure, so the runtime asks the stronger one before
--    raising anything.
-- With no model configured it uses the bundled scripted model.
local skein = require("skein")
local here = (debug.getinfo(1, "S").source:match("^@(.*/)")) or "./"
local interactive = arg and arg[1] == "--ask"

local offline = not skein.model()
if offline then
  skein.set_model("scripted:" .. here .. "clarify-model.json")
  print("model: the bundled scripted model (canned replies, offline)")
else
  print("model: " .. skein.model())
end
skein.load_skills(here .. "skills")

print("\n== 1. an ambiguous request")
local request = "tell them I'm running 10 minutes late"
print("request: " .. request)
local ok, err = pcall(skein.invoke, "Assistant.Message", request)
if not ok and skein.is_error(err) and err.kind == "uncertain" then
  print(string.format("raised: kind=%s in %s", err.kind, err["function"]))
  print("  reason:   " .. tostring(err.reason))
  print("  question: " .. tostring(err.question))
end

print("\n== 2. handled: skein.clarify answers the question and retries")
local reply = skein.clarify("Assistant.Message", request, function(e)
  io.write("the model asks: ", e.question or "(no question)", "\n")
  if interactive then
    io.write("your answer> ")
    io.flush()
    return io.read("l")
  end
  local answer = "the team channel"
  print("answering:      " .. answer)
  return answer
end)
print("result: " .. reply)

print("\n== 3. an escalation cascade: cheap model first, stronger if unsure")
-- Offline, a canned "small" model asks back and a canned "strong" one answers.
-- With a real model, put your cheap and strong specs here.
local cascade = offline
  and { "scripted:" .. here .. "clarify-model.json", "scripted:" .. here .. "clarify-strong.json" }
  or { skein.model() }
local before = skein.usage()
local ok2, res = pcall(skein.invoke, "Assistant.Refund",
  "Order 1182 arrived broken, I'd like my 40 EUR back.",
  { policy = { models = cascade } })
local after = skein.usage()
print(ok2 and ("result: " .. res) or ("still unsure after the cascade: " .. tostring(res)))
print(string.format("model calls: %d, escalations: %d",
  after.calls - before.calls, after.escalations - before.escalations))
