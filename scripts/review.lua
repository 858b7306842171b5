-- review.lua: the model checks its own work with a fresh context, content
-- filters guard what goes in and out, and personal data never leaves the
-- machine.
--
--   skein run scripts/review.lua
--
-- Assistant.Reply's config.json names a reviewer (Review.Check) and two
-- output filters (a PCRE2 rule and a plain-words policy checked by
-- Filter.Content).  With no model configured it uses the bundled scripted
-- model.
local skein = require("skein")
local here = (debug.getinfo(1, "S").source:match("^@(.*/)")) or "./"
if skein.model() then
  print("model: " .. skein.model())
else
  skein.set_model("scripted:" .. here .. "review-model.json")
  print("model: the bundled scripted model (canned replies, offline)")
end
skein.load_skills(here .. "skills")

local mail = "Hello, I ordered a lamp (order 2231). When will the delivery date be? -- Jane Doe"

print("\n== 1. review and revise: the first reply misses the question")
local before = skein.usage()
local reply = skein.invoke("Assistant.Reply", mail)
local after = skein.usage()
print("final reply: " .. reply)
print(string.format("reviews: %d, revisions: %d",
  after.reviews - before.reviews, after.revisions - before.revisions))

print("\n== 2. a content filter: the policy blocks blaming the customer")
local ok, err = pcall(skein.invoke, "Assistant.Reply",
  "My parcel went to the wrong address! Order 2232.")
print(ok and "passed?!" or string.format("%s: %s (rule %s)", err.kind, err.message, tostring(err.rule)))

print("\n== 3. ad hoc review of any text")
local passed, critique = skein.review("Dear Ms Doe, thank you for your order.",
  { task = "Answer the customer's question about the delivery date" })
print("passed: " .. tostring(passed) .. (critique and (", critique: " .. critique) or ""))

print("\n== 4. PII redaction: placeholders go out, originals come back")
-- Redaction is on by default for remote endpoints; here it is forced on
-- so the offline model shows it.  The trace records what was sent.
skein.prompt("Demo.Echo", "ECHO {{$input}}", '{"redact": true, "uncertainty": false}')
local trace = os.tmpname()
skein.set_trace(trace)
local text = "Contact jane.doe@example.com or +44 20 7946 0958, card 4111 1111 1111 1111."
local back = skein.invoke("Demo.Echo", text)
skein.set_trace(nil)
local sent
for line in io.lines(trace) do
  sent = line:match('"type":"model_call".-"prompt":"(.-)","reply"') or sent
end
os.remove(trace)
print("sent to the model: " .. tostring(sent))
print("caller sees:       " .. back)
