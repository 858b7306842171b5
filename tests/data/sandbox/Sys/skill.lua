-- Native functions that reach for the operating system: a plan or agent
-- may not run them with os.execute / io.popen unless allow_os is set.
return {
  Touch = {
    description = "Creates the file named by input with a shell command",
    parameters = { { name = "input", description = "A file path" } },
    run = function(args)
      local ok = os.execute("touch '" .. args.input .. "'")
      return ok and "touched" or "failed"
    end,
  },
  Peek = {
    description = "Runs a command and returns its output",
    parameters = { { name = "input", description = "A shell command" } },
    run = function(args)
      local p = io.popen(args.input)
      local out = p:read("a")
      p:close()
      return out
    end,
  },
}
