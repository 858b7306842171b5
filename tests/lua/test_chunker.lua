-- The ConversationSummaryPlugin's chunker against Semantic Kernel's own
-- TextChunker tests (dotnet/src/SemanticKernel.UnitTests/Text/
-- TextChunkerTests.cs, the plain-text cases with the default token
-- counter): the same input gives the same chunks.
local T = dofile("fixtures/harness.lua")
local src = os.getenv("SKEIN_SRC") or "../.."
local C = dofile(src .. "/skills/ConversationSummaryPlugin/chunker.lua")

local function same(got, want, what)
  local ok = #got == #want
  for i = 1, math.max(#got, #want) do ok = ok and got[i] == want[i] end
  if not ok then
    local g = {}
    for i, s in ipairs(got) do g[i] = string.format("%q", s) end
    io.stderr:write(what, ": got {", table.concat(g, ", "), "}\n")
  end
  T.check(ok, what)
end

local test = "This is a test of the emergency broadcast system. This is only a test."
local two = { test, "We repeat, this is only a test. A unit test." }

same(C.split_plain_text_lines(test, 15),
  { "This is a test of the emergency broadcast system.", "This is only a test." },
  "CanSplitPlainTextLines")
same(C.split_plain_text_paragraphs(two, 13),
  { "This is a test of the emergency broadcast system.", "This is only a test.",
    "We repeat, this is only a test. A unit test." }, "CanSplitTextParagraphs")
same(C.split_plain_text_paragraphs(two, 15, 8),
  { "This is a test of the emergency broadcast system.",
    "emergency broadcast system. This is only a test.",
    "This is only a test. We repeat, this is only a test.",
    "We repeat, this is only a test. A unit test.", "A unit test." },
  "CanSplitTextParagraphsWithOverlap")
same(C.split_plain_text_paragraphs({}, 13), {}, "CanSplitTextParagraphsWithEmptyInput")

local function case(name, input, want) same(C.split_plain_text_paragraphs(input, 15), want, name) end

case("CanSplitTextParagraphsEvenly", {
  test, "We repeat, this is only a test. A unit test.",
  "A small note. And another. And once again. Seriously, this is the end. We're finished. All set. Bye.",
  "Done." }, {
  "This is a test of the emergency broadcast system.", "This is only a test.",
  "We repeat, this is only a test. A unit test.", "A small note. And another. And once again.",
  "Seriously, this is the end. We're finished. All set. Bye. Done." })

case("CanSplitTextParagraphsOnNewlines", {
  "This is a test of the emergency broadcast system\r\nThis is only a test",
  "We repeat this is only a test\nA unit test",
  "A small note\nAnd another\r\nAnd once again\rSeriously this is the end\nWe're finished\nAll set\nBye\n",
  "Done" }, {
  "This is a test of the emergency broadcast system", "This is only a test",
  "We repeat this is only a test\nA unit test", "A small note\nAnd another\nAnd once again",
  "Seriously this is the end\nWe're finished\nAll set\nBye Done" })

case("CanSplitTextParagraphsOnPunctuation", {
  "This is a test of the emergency broadcast system. This is only a test",
  "We repeat, this is only a test? A unit test",
  "A small note! And another? And once again! Seriously, this is the end. We're finished. All set. Bye.",
  "Done." }, {
  "This is a test of the emergency broadcast system.", "This is only a test",
  "We repeat, this is only a test? A unit test", "A small note! And another? And once again!",
  "Seriously, this is the end.", "We're finished. All set. Bye.\nDone." })

case("CanSplitTextParagraphsOnSemicolons", {
  "This is a test of the emergency broadcast system; This is only a test",
  "We repeat; this is only a test; A unit test",
  "A small note; And another; And once again; Seriously, this is the end; We're finished; All set; Bye.",
  "Done." }, {
  "This is a test of the emergency broadcast system;", "This is only a test",
  "We repeat; this is only a test; A unit test", "A small note; And another; And once again;",
  "Seriously, this is the end; We're finished; All set; Bye. Done." })

case("CanSplitTextParagraphsOnColons", {
  "This is a test of the emergency broadcast system: This is only a test",
  "We repeat: this is only a test: A unit test",
  "A small note: And another: And once again: Seriously, this is the end: We're finished: All set: Bye.",
  "Done." }, {
  "This is a test of the emergency broadcast system:", "This is only a test",
  "We repeat: this is only a test: A unit test", "A small note: And another: And once again:",
  "Seriously, this is the end: We're finished: All set: Bye. Done." })

case("CanSplitTextParagraphsOnCommas", {
  "This is a test of the emergency broadcast system, This is only a test",
  "We repeat, this is only a test, A unit test",
  "A small note, And another, And once again, Seriously, this is the end, We're finished, All set, Bye.",
  "Done." }, {
  "This is a test of the emergency broadcast system,", "This is only a test",
  "We repeat, this is only a test, A unit test", "A small note, And another, And once again, Seriously,",
  "this is the end, We're finished, All set, Bye.\nDone." })

case("CanSplitTextParagraphsOnClosingBrackets", {
  "This is a test of the emergency broadcast system) This is only a test",
  "We repeat) this is only a test) A unit test",
  "A small note] And another) And once again] Seriously this is the end} We're finished} All set} Bye.",
  "Done." }, {
  "This is a test of the emergency broadcast system)", "This is only a test",
  "We repeat) this is only a test) A unit test", "A small note] And another) And once again]",
  "Seriously this is the end} We're finished} All set} Bye. Done." })

case("CanSplitTextParagraphsOnSpaces", {
  "This is a test of the emergency broadcast system This is only a test",
  "We repeat this is only a test A unit test",
  "A small note And another And once again Seriously this is the end We're finished All set Bye.",
  "Done." }, {
  "This is a test of the emergency", "broadcast system This is only a test",
  "We repeat this is only a test A unit test", "A small note And another And once again Seriously",
  "this is the end We're finished All set Bye.\nDone." })

case("CanSplitTextParagraphsOnHyphens", {
  "This is a test of the emergency broadcast system-This is only a test",
  "We repeat-this is only a test-A unit test",
  "A small note-And another-And once again-Seriously, this is the end-We're finished-All set-Bye.",
  "Done." }, {
  "This is a test of the emergency", "broadcast system-This is only a test",
  "We repeat-this is only a test-A unit test", "A small note-And another-And once again-Seriously,",
  "this is the end-We're finished-All set-Bye.\nDone." })

case("CanSplitTextParagraphsWithNoDelimiters", {
  "Thisisatestoftheemergencybroadcastsystem", "Thisisonlyatest",
  "WerepeatthisisonlyatestAunittest", "AsmallnoteAndanotherAndonceagain",
  "SeriouslythisistheendWe'refinishedAllsetByeDoneThisOneWillBeSplitToMeetTheLimit" }, {
  "Thisisatestoftheemergencybroadcastsystem\nThisisonlyatest",
  "WerepeatthisisonlyatestAunittest", "AsmallnoteAndanotherAndonceagain",
  "SeriouslythisistheendWe'refinishedAllse", "tByeDoneThisOneWillBeSplitToMeetTheLimit" })

local header = "DOCUMENT NAME: test.txt\n\n"
same(C.split_plain_text_paragraphs(two, 20, 0, header),
  { header .. "This is a test of the emergency broadcast system.", header .. "This is only a test.",
    header .. "We repeat, this is only a test. A unit test." }, "CanSplitTextParagraphsWithHeader")
same(C.split_plain_text_paragraphs(two, 22, 8, header),
  { header .. "This is a test of the emergency broadcast system.",
    header .. "emergency broadcast system. This is only a test.",
    header .. "This is only a test. We repeat, this is only a test.",
    header .. "We repeat, this is only a test. A unit test.", header .. "A unit test." },
  "CanSplitTextParagraphsWithOverlapAndHeader")

-- SK compares each separator's distance from the middle with the cut
-- kept so far (one past the separator before): on a tie the earlier cut
-- stays
same(C.split_plain_text_lines("aaa.bb.cccc", 1), { "aaa.", "bb.cccc" }, "the first of equals")
same(C.split_plain_text_lines("aaaa bbbb cccc dddd", 2), { "aaaa bbbb", "cccc dddd" },
     "the separator nearest the middle")

-- CanSplitVeryLargeDocumentsWithoutStackOverflowing: 100,000 words
local words, seed = {}, 42
local function rand(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
for i = 1, 100000 do
  local w = {}
  for j = 1, 1 + rand(9) do w[j] = string.char(97 + rand(26)) end
  words[i] = table.concat(w)
end
local big = table.concat(words, " ") .. " "
local lines = C.split_plain_text_lines(big, 20)
local paragraphs = C.split_plain_text_paragraphs(lines, 200)
T.check(#paragraphs > 0, "a very large document splits")
local rejoined = {}
for _, p in ipairs(paragraphs) do
  T.check(C.count(p) <= 200, "every paragraph within the limit")
  for w in p:gmatch("%S+") do rejoined[#rejoined + 1] = w end
end
T.eq(table.concat(rejoined, " "), table.concat(words, " "), "no word lost or cut")

-- tokens are UTF-16 code units / 4: no character is ever cut in two
local cjk = string.rep("漢字かな交じり文。", 40)
for _, line in ipairs(C.split_plain_text_lines(cjk, 10)) do
  T.check(utf8.len(line) ~= nil, "a line of CJK text is whole UTF-8")
  T.check(C.count(line) <= 10, "a CJK line within the limit")
end
T.eq(C.count("😀😀"), 1, "a character outside the BMP counts two units")
local bad = "abc\xff\xfe" .. string.rep("x ", 100)
local joined = table.concat(C.split_plain_text_lines(bad, 5), " ")
T.check(joined:find("\xff\xfe", 1, true) ~= nil, "invalid UTF-8 bytes pass through")

T.finish()
