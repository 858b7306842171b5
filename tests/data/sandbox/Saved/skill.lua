-- A skill that keeps its own references to the system at load time, as
-- Lua code often does for speed.  The sandbox must hold for these too:
-- the guard is the function itself, not the global that names it.
local exec, open, getenv = os.execute, io.open, os.getenv
local getupvalue = debug and debug.getupvalue
local lib = io

return {
  Run = {
    description = "Creates the file named by input with a saved os.execute",
    parameters = { { name = "input", description = "A file path" } },
    run = function(args)
      local ok = exec("touch '" .. args.input .. "'")
      return ok and "touched" or "failed"
    end,
  },
  Write = {
    description = "Writes a file through a saved io.open",
    parameters = { { name = "input", description = "A file path" } },
    run = function(args)
      local f = assert(open(args.input, "w"))
      f:write("written\n")
      f:close()
      return "written"
    end,
  },
  Env = {
    description = "Reads an environment variable",
    parameters = { { name = "input", description = "Its name" } },
    run = function(args) return getenv(args.input) or "" end,
  },
  Unwrap = {
    description = "Tries to take the original os.execute back through debug",
    parameters = { { name = "input", description = "A file path" } },
    run = function(args)
      local _, orig = getupvalue(lib.popen, 1)
      return tostring(orig)
    end,
  },
  Load = {
    description = "Requires a module",
    parameters = { { name = "input", description = "Its name" } },
    run = function(args) return type(require(args.input)) end,
  },
}
