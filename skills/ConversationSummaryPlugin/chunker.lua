-- chunker.lua -- Semantic Kernel's TextChunker for plain text, in Lua
-- (see NOTICE): splits a text into lines and then paragraphs of at most a
-- number of tokens, cutting at the separator nearest the middle, newlines
-- first, then sentence ends, and so on down to spaces and hyphens.
--
-- Tokens are counted as SK counts them without a tokenizer: the length in
-- UTF-16 code units divided by four.  Positions are whole characters
-- (code points), so a character is never cut in two.
--
--   local chunker = dofile(".../chunker.lua")
--   chunker.split_plain_text_lines(text, max_tokens)          -> { line, ... }
--   chunker.split_plain_text_paragraphs(lines, max_tokens
--                                       [, overlap [, header]]) -> { paragraph, ... }

local M = {}

-- SK's plain-text separators, tried in order; false cuts in the middle
local PLAIN = { "\n", ".。．", "?!", ";", ":", ",，、", ")]}", " ", "-", false }

-- .NET's char.IsWhiteSpace, which string.Trim strips
local SPACE = {}
for _, c in ipairs({ 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028,
                     0x2029, 0x202F, 0x205F, 0x3000 }) do
  SPACE[c] = true
end
for c = 0x2000, 0x200A do SPACE[c] = true end

-- A text as an array of code points.  Invalid UTF-8 is taken byte by
-- byte (each byte a character), so any input can be chunked.
local function decode(s)
  local cps = {}
  if utf8.len(s) then
    for _, c in utf8.codes(s) do cps[#cps + 1] = c end
    return cps
  end
  local i, n = 1, #s
  while i <= n do
    local ok, c = pcall(utf8.codepoint, s, i)
    if ok then
      cps[#cps + 1] = c
      i = utf8.offset(s, 2, i)
    else
      cps[#cps + 1] = -s:byte(i) -- a raw byte, kept as it was
      i = i + 1
    end
  end
  return cps
end

local function encode(cps, from, to)
  local parts = {}
  for i = from, to do
    local c = cps[i]
    parts[#parts + 1] = c < 0 and string.char(-c) or utf8.char(c)
  end
  return table.concat(parts)
end

-- UTF-16 code units of a code point array slice
local function units(cps, from, to)
  local n = 0
  for i = from, to do n = n + ((cps[i] or 0) >= 0x10000 and 2 or 1) end
  return n
end

local function count_cps(cps, from, to) return units(cps, from, to) >> 2 end

function M.count(s)
  local cps = decode(s)
  return count_cps(cps, 1, #cps)
end

local function trim_range(cps, from, to)
  while from <= to and SPACE[cps[from]] do from = from + 1 end
  while to >= from and SPACE[cps[to]] do to = to - 1 end
  return from, to
end

local function trim(s)
  local cps = decode(s)
  local from, to = trim_range(cps, 1, #cps)
  return encode(cps, from, to)
end

local function seps_of(spec)
  local set = {}
  if spec then
    for _, c in utf8.codes(spec) do set[c] = true end
  end
  return set
end

-- SK's Split on one piece: cps[from..to], `tokens` its token count.
-- Appends the resulting {text, tokens} pairs to out; returns whether it
-- was over the limit (split, or tried to be).
local function split_piece(cps, from, to, max_tokens, seps, has_seps, trim_it, tokens, out)
  local len = to - from + 1
  local was_split = false
  if tokens > max_tokens then
    was_split = true
    local half = len // 2
    local cut = -1 -- 0-based offset of the first character of the second half
    if not has_seps then
      cut = half
    elseif len > 2 then
      -- every separator but in the last position; the one nearest the
      -- middle wins, the first of equals
      for idx = 0, len - 2 do
        if seps[cps[from + idx]] and math.abs(half - idx) < math.abs(half - cut) then
          cut = idx + 1
        end
      end
    end
    if cut > 0 then
      local a1, b1 = from, from + cut - 1
      local a2, b2 = from + cut, to
      if trim_it then
        a1, b1 = trim_range(cps, a1, b1)
        a2, b2 = trim_range(cps, a2, b2)
      end
      local s1 = split_piece(cps, a1, b1, max_tokens, seps, has_seps, trim_it,
                             count_cps(cps, a1, b1), out)
      local s2 = split_piece(cps, a2, b2, max_tokens, seps, has_seps, trim_it,
                             count_cps(cps, a2, b2), out)
      return s1 or s2
    end
  end
  local a, b = from, to
  if trim_it then
    a, b = trim_range(cps, from, to)
    if a ~= from or b ~= to then tokens = count_cps(cps, a, b) end
  end
  out[#out + 1] = { encode(cps, a, b), tokens }
  return was_split
end

-- SK's InternalSplitLines: split by each kind of separator in turn while
-- some piece is still too long.
local function split_lines(text, max_tokens, trim_it, options)
  text = text:gsub("\r\n", "\n")
  local pieces = { { text, M.count(text) } }
  for _, spec in ipairs(options) do
    local seps, has = seps_of(spec), spec and true or false
    local next_pieces, any = {}, false
    for _, p in ipairs(pieces) do
      local cps = decode(p[1])
      any = split_piece(cps, 1, #cps, max_tokens, seps, has, trim_it, p[2], next_pieces) or any
    end
    pieces = next_pieces
    if not any then break end
  end
  local lines = {}
  for i, p in ipairs(pieces) do lines[i] = p[1] end
  return lines
end

function M.split_plain_text_lines(text, max_tokens)
  return split_lines(text, max_tokens, true, PLAIN)
end

local function words(s)
  local w = {}
  for x in s:gmatch("[^ ]+") do w[#w + 1] = x end
  return w
end

-- SK's BuildParagraph: lines joined with newlines while they fit.
local function build_paragraphs(lines, max_tokens)
  local paragraphs, buf, buf_units = {}, {}, 0
  for _, line in ipairs(lines) do
    if buf_units > 0 then
      local current = M.count(line) + 1
      if current < max_tokens then current = current + (buf_units >> 2) end
      if current >= max_tokens then
        paragraphs[#paragraphs + 1] = trim(table.concat(buf))
        buf, buf_units = {}, 0
      end
    end
    buf[#buf + 1] = line .. "\n"
    local cps = decode(line)
    buf_units = buf_units + units(cps, 1, #cps) + 1
  end
  if buf_units > 0 then paragraphs[#paragraphs + 1] = trim(table.concat(buf)) end
  return paragraphs
end

function M.split_plain_text_paragraphs(lines, max_tokens, overlap, header)
  overlap = overlap or 0
  if max_tokens <= 0 then error("max_tokens must be a positive number", 2) end
  if max_tokens <= overlap then error("overlap cannot be larger than max_tokens", 2) end
  if #lines == 0 then return {} end
  local header_tokens = header and #header > 0 and M.count(header) or 0
  local adjusted = max_tokens - overlap - header_tokens
  local pieces = {}
  for _, line in ipairs(lines) do
    line = line:gsub("\r\n", "\n"):gsub("\r", "\n")
    for _, piece in ipairs(split_lines(line, adjusted, false, PLAIN)) do
      pieces[#pieces + 1] = piece
    end
  end
  local paragraphs = build_paragraphs(pieces, adjusted)
  -- a short last paragraph joins the one before when both fit
  if #paragraphs > 1 then
    local last, before = paragraphs[#paragraphs], paragraphs[#paragraphs - 1]
    if M.count(last) < adjusted // 4 then
      local lw, bw = words(last), words(before)
      if #lw + #bw <= adjusted then
        paragraphs[#paragraphs - 1] = table.concat(bw, " ") .. " " .. table.concat(lw, " ")
        paragraphs[#paragraphs] = nil
      end
    end
  end
  local out = {}
  for i, p in ipairs(paragraphs) do
    local s = header or ""
    if overlap > 0 and i < #paragraphs then
      local split = split_lines(paragraphs[i + 1], overlap, false, PLAIN)
      s = s .. p
      if #split > 0 then s = s .. " " .. split[1] end
    else
      s = s .. p
    end
    out[i] = s
  end
  return out
end

return M
