-- A script that fails while loading.
local t = {}
t.Oops = function(args) return args.input end
error("deliberate failure while loading")
