-- distill_standin.lua -- TEMPORARY stand-in for `skein distill`, used by
-- tests/local-model/loop only while the skein binary has no distill
-- command. It writes the files of the agreed interface
--
--   skein distill Skill.Fn --from FILE --out DIR [--seed N]
--
-- from one trace file, for this test's task only: the model_call lines of
-- Skill.Fn with an accepted reply, de-duplicated by prompt, split 0.6 /
-- 0.2 / 0.2 in a seeded order into train.txt (prompt, answer, an end line),
-- train.jsonl, calibration.jsonl and test.jsonl. Delete this file once
-- `skein distill` has landed.
--
--   lua5.4 distill_standin.lua Skill.Fn TRACE OUTDIR SEED
local fn, trace, out, seed = arg[1], arg[2], arg[3], tonumber(arg[4])
assert(fn and trace and out and seed, "usage: distill_standin.lua Skill.Fn TRACE OUTDIR SEED")

-- a small JSON reader: enough for trace lines
local function decode(s)
  local pos = 1
  local value
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function str()
    local buf = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == "" then error("unterminated string") end
      if c == '"' then pos = pos + 1; return table.concat(buf) end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if e == "u" then
          local cp = tonumber(s:sub(pos + 2, pos + 5), 16)
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF and s:sub(pos, pos + 1) == "\\u" then
            local lo = tonumber(s:sub(pos + 2, pos + 5), 16)
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            pos = pos + 6
          end
          buf[#buf + 1] = utf8.char(cp)
        else
          buf[#buf + 1] = map[e] or e
          pos = pos + 2
        end
      else
        local j = s:find('["\\]', pos) or #s + 1
        buf[#buf + 1] = s:sub(pos, j - 1)
        pos = j
      end
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local o = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return o end
      while true do
        ws()
        local k = str()
        ws(); pos = pos + 1 -- ':'
        o[k] = value()
        ws()
        c = s:sub(pos, pos); pos = pos + 1
        if c == "}" then return o end
      end
    elseif c == "[" then
      local a = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return a end
      while true do
        a[#a + 1] = value()
        ws()
        c = s:sub(pos, pos); pos = pos + 1
        if c == "]" then return a end
      end
    elseif c == '"' then
      return str()
    else
      local lit = s:match("^[%w%.%+%-]+", pos)
      pos = pos + #lit
      if lit == "true" then return true elseif lit == "false" then return false
      elseif lit == "null" then return nil end
      return tonumber(lit)
    end
  end
  return value()
end

local function enc(x)
  return '"' .. x:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" else return ("\\u%04x"):format(c:byte()) end
  end) .. '"'
end

local examples, seen = {}, {}
for line in io.lines(trace) do
  local ok, j = pcall(decode, line)
  if ok and type(j) == "table" and j.type == "model_call" and j["function"] == fn
      and j.reply and not j.error and (j.finish_reason == nil or j.finish_reason == "stop")
      and not seen[j.prompt] then
    seen[j.prompt] = true
    examples[#examples + 1] = { prompt = j.prompt, answer = j.reply }
  end
end
math.randomseed(seed)
for i = #examples, 2, -1 do
  local k = math.random(i)
  examples[i], examples[k] = examples[k], examples[i]
end
local n = #examples
local n_cal, n_test = math.floor(n * 0.2), math.floor(n * 0.2)
local n_train = n - n_cal - n_test
local txt = assert(io.open(out .. "/train.txt", "w"))
local jl = assert(io.open(out .. "/train.jsonl", "w"))
local cal = assert(io.open(out .. "/calibration.jsonl", "w"))
local test = assert(io.open(out .. "/test.jsonl", "w"))
for i, x in ipairs(examples) do
  if i <= n_train then
    txt:write(x.prompt, x.answer, "\n<|endoftext|>\n")
    jl:write('{"messages":[{"role":"user","content":', enc(x.prompt),
             '},{"role":"assistant","content":', enc(x.answer), '}]}\n')
  else
    local f = i <= n_train + n_cal and cal or test
    f:write('{"input": ', enc(x.prompt), ', "expected": ', enc(x.answer),
            ', "function": ', enc(fn), '}\n')
  end
end
txt:close(); jl:close(); cal:close(); test:close()
io.stderr:write(("distill (stand-in): %d examples: train %d, calibration %d, test %d\n")
  :format(n, n_train, n_cal, n_test))
