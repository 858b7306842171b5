-- ConversationSummaryPlugin: Semantic Kernel's plugin of that name (see
-- NOTICE).  Each function splits a long transcript as SK does (into lines,
-- then paragraphs of at most 1024 tokens, with SK's TextChunker), runs its
-- prompt on every paragraph, and joins the answers with newlines in the
-- order of the paragraphs.  The prompts are the function folders beside
-- this file (SummarizeConversationChunk, ...), SK's own text and
-- settings; a skill folder of your own can replace them by name.
--
-- SK runs the paragraphs one after another; here up to PARALLEL run at
-- once, which changes how long it takes, not what comes back.

local skein = require("skein")

local MAX_TOKENS = 1024 -- SK's, per paragraph and per prompt call
local PARALLEL = 4

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local chunker = dofile(here .. "/chunker.lua")

local function process(prompt, args)
  local input = args.input or ""
  local lines = chunker.split_plain_text_lines(input, MAX_TOKENS)
  local paragraphs = chunker.split_plain_text_paragraphs(lines, MAX_TOKENS)
  local calls = {}
  for i, p in ipairs(paragraphs) do calls[i] = { prompt, { input = p } } end
  local results = skein.parallel(calls, { max = PARALLEL })
  return table.concat(results, "\n")
end

local function plugin_function(description, prompt)
  return {
    description = description,
    parameters = { { name = "input", description = "A long conversation transcript.", default = "" } },
    run = function(args) return process(prompt, args) end,
  }
end

return {
  SummarizeConversation = plugin_function(
    "Given a long conversation transcript, summarize the conversation.",
    "ConversationSummaryPlugin.SummarizeConversationChunk"),
  GetConversationActionItems = plugin_function(
    "Given a long conversation transcript, identify action items.",
    "ConversationSummaryPlugin.GetConversationActionItemsChunk"),
  GetConversationTopics = plugin_function(
    "Given a long conversation transcript, identify topics worth remembering.",
    "ConversationSummaryPlugin.GetConversationTopicsChunk"),
}
