-- Times a CSV import: skein run bench/csv_import.lua FILE
local skein = require("skein")
local path = assert(arg[1], "usage: csv_import.lua FILE")
local t0 = os.clock()
local df = skein.df.read_csv(path)
local rows = df:count()
local cpu = os.clock() - t0
print(string.format("rows=%d cpu_s=%.3f", rows, cpu))
