-- mutate.lua -- breaks each documented promise on purpose and checks that
-- the test suite notices.
--
--   lua5.4 tools/mutate.lua [--list] [--only NAME[,NAME...]] [--sample N] [--jobs N]
--                           [--tests REGEX] [--exclude REGEX]
--
-- --tests and --exclude narrow the suite run for each mutation (ctest -R,
-- -E): quicker when checking a few mutations whose tests are known, but a
-- mutation only a left-out test catches then shows as a survivor.
--
-- tests/mutations.txt lists the breakages: each is one exact piece of code
-- in one file and what to put in its place, with the promise it breaks.
-- The tree is copied (the files git tracks) into a scratch folder, built
-- once, then for each mutation: apply it, rebuild, run the suite, put the
-- code back.  A mutation the suite does not notice is a survivor: a
-- promise without a test that guards it.  Exit status 1 when any survive
-- (or a mutation no longer applies), 0 otherwise.
local function sh(cmd) return os.execute(cmd) == true end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local args = { jobs = 2 }
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--list" then args.list = true
  elseif a == "--only" then i = i + 1; args.only = arg[i]
  elseif a == "--sample" then i = i + 1; args.sample = tonumber(arg[i])
  elseif a == "--jobs" then i = i + 1; args.jobs = tonumber(arg[i])
  elseif a == "--tests" then i = i + 1; args.tests = arg[i]
  elseif a == "--exclude" then i = i + 1; args.exclude = arg[i]
  else io.stderr:write("mutate: unknown argument ", a, "\n"); os.exit(2) end
  i = i + 1
end

local root = io.popen("git rev-parse --show-toplevel"):read("l")
assert(root, "mutate: run it inside the skein checkout")

-- The list: blocks of "key: value" lines under a [name] header.
local function read_list(path)
  local list, cur, n = {}, nil, 0
  for line in io.lines(path) do
    n = n + 1
    if line:match("^%s*#") or line:match("^%s*$") then
      -- comment or blank
    elseif line:match("^%[.+%]%s*$") then
      cur = { name = line:match("^%[(.+)%]"), line = n }
      list[#list + 1] = cur
    else
      local key, value = line:match("^(%w+):%s?(.*)$")
      if not key or not cur then
        error(string.format("%s:%d: expected [name] or key: value", path, n))
      end
      if cur[key] then -- a continued find/replace: one more line
        cur[key] = cur[key] .. "\n" .. value
      else
        cur[key] = value
      end
    end
  end
  for _, m in ipairs(list) do
    for _, k in ipairs({ "promise", "file", "find", "replace" }) do
      if not m[k] then error(string.format("%s:%d: [%s] has no %s", path, m.line, m.name, k)) end
    end
  end
  return list
end

local list = read_list(root .. "/tests/mutations.txt")
if args.list then
  for _, m in ipairs(list) do print(m.name .. "  " .. m.promise) end
  os.exit(0)
end
if args.only then
  local keep = {}
  -- a comma-separated list: a mutation is kept when its name holds any
  for _, m in ipairs(list) do
    for part in args.only:gmatch("[^,]+") do
      if m.name:find(part, 1, true) then keep[#keep + 1] = m; break end
    end
  end
  list = keep
end
if args.sample and args.sample < #list then
  math.randomseed(tonumber(os.getenv("MUTATE_SEED") or os.time()))
  for j = #list, 2, -1 do local k = math.random(j); list[j], list[k] = list[k], list[j] end
  for j = #list, args.sample + 1, -1 do list[j] = nil end
end

local work = io.popen("mktemp -d /tmp/skein-mutate-XXXXXX"):read("l")
local function cleanup() sh("rm -rf " .. q(work)) end
print("copying the tree to " .. work)
assert(sh("cd " .. q(root) .. " && git ls-files -z | xargs -0 cp --parents -t " .. q(work)),
       "mutate: copying the tree failed")
local build = work .. "/build"
local filter = (args.tests and " -R " .. q(args.tests) or "") ..
               (args.exclude and " -E " .. q(args.exclude) or "")
local quiet = " >" .. q(work .. "/log") .. " 2>&1"
print("building once")
if not sh("cmake -S " .. q(work) .. " -B " .. q(build) .. " -DCMAKE_BUILD_TYPE=RelWithDebInfo" .. quiet)
   or not sh("cmake --build " .. q(build) .. " -j " .. args.jobs .. quiet) then
  io.stderr:write("mutate: the unmutated tree does not build; see " .. work .. "/log\n")
  os.exit(1)
end
if not sh("cd " .. q(build) .. " && ctest -j " .. args.jobs .. filter .. quiet) then
  io.stderr:write("mutate: the unmutated suite fails; nothing to measure (" .. work .. "/log)\n")
  os.exit(1)
end

local function read(path) local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s end
local function write(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end

local survivors, stale, killed = {}, {}, 0
for n, m in ipairs(list) do
  local path = work .. "/" .. m.file
  local ok, text = pcall(read, path)
  local at = ok and text:find(m.find, 1, true)
  local again = at and text:find(m.find, at + 1, true)
  io.write(string.format("[%d/%d] %s: ", n, #list, m.name))
  io.flush()
  if not at or again then
    print(not at and "does not apply (the code moved?)" or "applies in more than one place")
    stale[#stale + 1] = m
  else
    write(path, text:sub(1, at - 1) .. m.replace .. text:sub(at + #m.find))
    local built = sh("cmake --build " .. q(build) .. " -j " .. args.jobs .. quiet)
    -- the first failing test settles it: stop there (ctest runs the tests
    -- that failed last time first, so a caught mutation is quick to tell)
    local caught = not built or not sh("cd " .. q(build) .. " && ctest -j " .. args.jobs .. filter
                                       .. " --timeout 300 --stop-on-failure" .. quiet)
    write(path, text)
    if not built then
      print("does not build: fix the mutation")
      stale[#stale + 1] = m
    elseif caught then
      killed = killed + 1
      print("caught")
    else
      print("SURVIVED")
      survivors[#survivors + 1] = m
    end
  end
end
-- the last mutation's objects: rebuild so the tree is whole again
sh("cmake --build " .. q(build) .. " -j " .. args.jobs .. quiet)

print(string.format("\n%d mutations: %d caught, %d survived, %d broken (no longer apply or build)",
                    #list, killed, #survivors, #stale))
for _, m in ipairs(survivors) do
  print(string.format("survivor: [%s] %s (%s)", m.name, m.promise, m.file))
end
for _, m in ipairs(stale) do
  print(string.format("stale: [%s] %s (%s)", m.name, m.promise, m.file))
end
cleanup()
os.exit((#survivors == 0 and #stale == 0) and 0 or 1)
