-- Text: small text utilities that need no model.
--
-- Each entry maps a function name to a Lua function taking the argument
-- table (all values are strings; args.input is the main input) or to a
-- table with a description, its parameters and the function as `run`.
-- Upper and Lower change ASCII letters only; other bytes pass through.

local function text(v)
  if v == nil then return "" end
  return tostring(v)
end

-- Linear in the length of s, whatever its whitespace.
local function trim(s)
  local from = s:match("^%s*()")
  if from > #s then return "" end
  return s:match(".*%S", from)
end

return {
  Upper = {
    description = "Converts the text to upper case.",
    parameters = {
      { name = "input", description = "The text to convert.", default = "" },
    },
    run = function(args) return text(args.input):upper() end,
  },

  Lower = {
    description = "Converts the text to lower case.",
    parameters = {
      { name = "input", description = "The text to convert.", default = "" },
    },
    run = function(args) return text(args.input):lower() end,
  },

  Trim = {
    description = "Removes whitespace from both ends of the text.",
    parameters = {
      { name = "input", description = "The text to trim.", default = "" },
    },
    run = function(args) return trim(text(args.input)) end,
  },

  Length = {
    description = "Counts the characters of the text (bytes when it is not valid UTF-8).",
    parameters = {
      { name = "input", description = "The text to measure.", default = "" },
    },
    run = function(args)
      local s = text(args.input)
      return tostring(utf8.len(s) or #s)
    end,
  },

  Concat = {
    description = "Joins two texts, with an optional separator between them.",
    parameters = {
      { name = "input", description = "The first text.", default = "" },
      { name = "input2", description = "The second text.", default = "" },
      { name = "separator", description = "Put between the two texts.", default = "" },
    },
    run = function(args)
      return text(args.input) .. text(args.separator) .. text(args.input2)
    end,
  },
}
