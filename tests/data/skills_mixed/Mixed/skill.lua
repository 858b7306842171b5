-- A native function in plain form, next to prompt functions.
return {
  Shout = function(args) return (args.input or ""):upper() .. "!" end,
}
