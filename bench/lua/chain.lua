-- A 3-step chain, each output the next step's prompt: skein run bench/lua/chain.lua SPEC
local skein = require("skein")
skein.set_model(arg[1])
skein.load_skills("bench/skills")
local text = "hello"
for _ = 1, 3 do text = skein.invoke("Bench.Echo", text) end
print(text)
