-- loop_data.lua -- the labelled task of the distillation loop: short
-- messages about a dog, the sun or food, in words a 512-token TinyStories
-- vocabulary can say, and a scripted oracle that knows every label.
--
--   lua5.4 loop_data.lua DIR N SEED
--
-- writes DIR/inputs.jsonl (N distinct messages, {"input": ...} per line,
-- in a seeded order) and DIR/oracle.json (a scripted model: one rule per
-- message, replying with its label at probability 1).
local dir, n, seed = arg[1], tonumber(arg[2]), tonumber(arg[3])
if not (dir and n and seed) then
  io.stderr:write("usage: lua5.4 loop_data.lua DIR N SEED\n")
  os.exit(2)
end

-- Each message names its topic ("dog", "sun", "food") among other words:
-- a clear signal that a 260K-parameter model can pick up in minutes.
local topics = {
  { label = "dog",
    who = { "the dog", "the big dog", "the little dog", "the brown dog", "my dog" },
    did = { "barked at the cat", "ran to the park", "wagged his tail", "chased the ball",
            "dug a hole in the yard", "licked my hand", "slept on the bed" } },
  { label = "sun",
    who = { "the sun", "the bright sun", "the warm sun", "the big yellow sun", "the hot sun" },
    did = { "came up in the sky", "was very hot", "shined on the grass", "went down at night",
            "made the sky bright", "was warm on my face", "hid behind a cloud" } },
  { label = "food",
    who = { "mom", "the girl", "the boy", "dad", "my friend" },
    did = { "ate some food", "made food for lunch", "had good food", "cooked hot food",
            "gave the food to me", "put the food on the table", "liked the sweet food" } },
}
local when = { "", "today ", "one day ", "in the morning ", "after school ", "at night " }

local all = {}
for _, t in ipairs(topics) do
  for _, w in ipairs(t.who) do
    for _, d in ipairs(t.did) do
      for _, h in ipairs(when) do
        local s = h .. w .. " " .. d .. "."
        all[#all + 1] = { text = s:sub(1, 1):upper() .. s:sub(2), label = t.label }
      end
    end
  end
end
if n > #all then
  io.stderr:write(("loop_data: at most %d distinct messages\n"):format(#all))
  os.exit(2)
end

-- a seeded shuffle (Lua 5.4's xoshiro256**: the same order everywhere)
math.randomseed(seed)
for i = #all, 2, -1 do
  local j = math.random(i)
  all[i], all[j] = all[j], all[i]
end

local function esc_json(s)
  return (s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" else return ("\\u%04x"):format(c:byte()) end
  end))
end
-- a literal PCRE2 pattern
local function esc_re(s)
  return (s:gsub("[%^%$%.%[%]%(%)%*%+%?%{%}%|\\]", "\\%0"))
end

local inputs = assert(io.open(dir .. "/inputs.jsonl", "w"))
local oracle = assert(io.open(dir .. "/oracle.json", "w"))
oracle:write('{ "rules": [\n')
for i = 1, n do
  local m = all[i]
  inputs:write(('{"input": "%s"}\n'):format(esc_json(m.text)))
  oracle:write(('  { "match": "%s", "reply": "%s", "logprobs": [["%s", 0]] }%s\n'):format(
    esc_json("Message: " .. esc_re(m.text) .. "\n"), m.label, m.label, i < n and "," or ""))
end
oracle:write("] }\n")
inputs:close()
oracle:close()
