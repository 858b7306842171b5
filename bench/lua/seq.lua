-- N sequential calls: skein run bench/lua/seq.lua SPEC N
local skein = require("skein")
local spec, n = arg[1], tonumber(arg[2])
skein.set_model(spec)
skein.load_skills("bench/skills")
for i = 1, n do
  assert(skein.invoke("Bench.Echo", "hello") == "ok")
end
print(string.format("calls=%d", n))
