-- agent.lua: a step-by-step agent answering a question with two tools.
--
--   skein run scripts/agent.lua
--
-- The agent has a stock lookup and a calculator, both plain Lua functions
-- defined below. Each step it thinks, calls one of them, and reads what it
-- returned, until it can answer. With SKEIN_MODEL, OPENAI_API_KEY or
-- OPENAI_BASE_URL set it uses that model; otherwise the bundled scripted
-- model (scripts/agent-model.json), whose canned replies follow the same
-- three steps, so the example runs offline.
local skein = require("skein")

local here = (debug.getinfo(1, "S").source:match("^@(.*/)")) or "./"

if skein.model() then
  print("model: " .. skein.model())
else
  skein.set_model("scripted:" .. here .. "agent-model.json")
  print("model: the bundled scripted model (canned replies, offline);")
  print("       set SKEIN_MODEL, OPENAI_API_KEY or OPENAI_BASE_URL for a real one")
end

-- A tiny shop: what is in stock, and at what unit price.
local stock = {
  widget = { count = 12, price = 7.50 },
  gadget = { count = 3, price = 19.99 },
  sprocket = { count = 40, price = 0.25 },
}

skein.define("Shop.Stock", {
  description = "How many of an item the shop has in stock, and its unit price",
  parameters = { { name = "item", description = "The item, e.g. widget" } },
  run = function(args)
    local name = (args.item or ""):lower():gsub("%s+", ""):gsub("s$", "")
    local s = stock[name]
    if not s then
      local names = {}
      for k in pairs(stock) do names[#names + 1] = k end
      table.sort(names)
      return "no item called " .. (args.item or "") .. "; the shop sells: " .. table.concat(names, ", ")
    end
    return string.format("%s: %d in stock at %.2f each", name, s.count, s.price)
  end,
})

skein.define("Math.Multiply", {
  description = "Multiplies two numbers",
  parameters = {
    { name = "a", description = "A number" },
    { name = "b", description = "Another number" },
  },
  run = function(args)
    local a, b = tonumber(args.a), tonumber(args.b)
    if not a or not b then
      error("both a and b must be numbers")
    end
    return string.format("%.2f", a * b)
  end,
})

local goal = "What would it cost to buy every widget the shop has in stock?"
print("goal: " .. goal)
print("")

local answer = skein.agent({
  goal = goal,
  functions = { "Shop.Stock", "Math.Multiply" },
  max_steps = 6,
  on_step = function(text) io.write(text) end,
})

print("answer: " .. answer)
local u = skein.usage()
print(string.format("%d model calls, %d prompt tokens, %d completion tokens",
  u.calls, u.prompt_tokens, u.completion_tokens))
