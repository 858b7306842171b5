-- Native join for the k=8 plan benchmark: no model call, so the plan's
-- wall time is the eight parallel steps plus orchestration only.
local params = {}
for _, n in ipairs({ "a", "b", "c", "d", "e", "f", "g", "h" }) do
  params[#params + 1] = { name = n, description = "One branch's output.", default = "" }
end
return {
  Eight = {
    description = "Joins eight texts, one per line.",
    parameters = params,
    run = function(args)
      return table.concat({ args.a, args.b, args.c, args.d, args.e, args.f, args.g, args.h }, "\n")
    end,
  },
}
