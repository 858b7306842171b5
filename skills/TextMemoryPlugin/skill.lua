-- TextMemoryPlugin: Semantic Kernel's text memory plugin under its names
-- (SK .NET's Recall, Save, Retrieve and Remove; SK Python's recall and
-- save), over skein's memory (skein.memory: SQLite with FTS5, ranked by
-- BM25, or by cosine similarity with an embeddings model).  So SK memory
-- prompts run with no other service: {{recall $input}},
-- {{TextMemoryPlugin.recall 'budget by year' collection='finances'}}.
--
-- The question is `input` (SK .NET's name), or `ask` (SK Python's) when
-- that is given; the text to save is `input`, or `text`.  Defaults are
-- SK .NET's: collection "generic", relevance 0, limit 1.  A recall with
-- limit 1 gives the best memory's text; with more, a JSON array of texts,
-- best first; with none found, an empty text.

local skein = require("skein")

local function bad(msg) error(skein.error("usage", msg), 0) end

local function given(v) return v ~= nil and v:match("%S") ~= nil end

-- SK Python's parameter name when it is given, else SK .NET's
local function main_text(args, alias)
  if given(args[alias]) then return args[alias] end
  return args.input or ""
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                    ["\b"] = "\\b", ["\f"] = "\\f" }
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function number_arg(args, name, lo, hi, whole)
  local raw = args[name]
  local n = tonumber(raw and raw:match("^%s*(.-)%s*$"))
  if not n or n ~= n or n < lo or n > hi or (whole and math.type(n) ~= "integer" and n ~= math.floor(n)) then
    bad(string.format("%s must be %s from %s to %s, got %q", name,
                      whole and "a whole number" or "a number", lo, hi, raw or ""))
  end
  return whole and math.floor(n) or n
end

local function collection(args)
  local c = args.collection
  if not given(c) then return "generic" end
  return c
end

return {
  Recall = {
    description = "Semantic search and return up to N memories related to the input text",
    parameters = {
      { name = "input", description = "The input text to find related memories for" },
      { name = "collection", description = "Memories collection to search", default = "generic" },
      { name = "relevance", description = "The relevance score, from 0.0 to 1.0, where 1.0 means perfect match", default = "0" },
      { name = "limit", description = "The maximum number of relevant memories to recall", default = "1" },
      { name = "ask", description = "The question, under SK Python's name (instead of input)" },
    },
    run = function(args)
      local question = main_text(args, "ask")
      if not given(question) then bad("recall: the question is empty") end
      local limit = number_arg(args, "limit", 1, 100, true)
      local hits = skein.memory.recall(question, {
        collection = collection(args),
        relevance = number_arg(args, "relevance", 0, 1, false),
        limit = limit,
      })
      if #hits == 0 then return "" end
      if limit == 1 then return hits[1].text end
      local texts = {}
      for i, h in ipairs(hits) do texts[i] = json_string(h.text) end
      return "[" .. table.concat(texts, ",") .. "]"
    end,
  },

  Save = {
    description = "Save information to semantic memory",
    parameters = {
      { name = "input", description = "The information to save" },
      { name = "key", description = "The key associated with the information to save" },
      { name = "collection", description = "Memories collection associated with the information to save", default = "generic" },
      { name = "text", description = "The information, under SK Python's name (instead of input)" },
    },
    run = function(args)
      skein.memory.save(main_text(args, "text"), args.key or "", collection(args))
      return ""
    end,
  },

  Retrieve = {
    description = "Key-based lookup for a specific memory",
    parameters = {
      { name = "key", description = "The key associated with the memory to retrieve" },
      { name = "collection", description = "Memories collection associated with the memory to retrieve", default = "generic" },
    },
    run = function(args) return skein.memory.get(args.key or "", collection(args)) or "" end,
  },

  Remove = {
    description = "Remove specific memory",
    parameters = {
      { name = "key", description = "The key associated with the information to save" },
      { name = "collection", description = "Memories collection associated with the information to save", default = "generic" },
    },
    run = function(args)
      skein.memory.remove(args.key or "", collection(args))
      return ""
    end,
  },
}
