-- time: Semantic Kernel's TimePlugin under its own names, so that SK
-- prompts calling {{time.Date}}, {{time.now}} or a bare {{date}} run
-- unchanged.  Every function SK .NET's TimePlugin has, plus the names SK
-- Python gives its own (iso_date, month_number, days_ago,
-- date_matching_last_day_name).
--
-- The clock is the kernel's (skein.now): the system clock, or the instant
-- fixed by the option `now` or SKEIN_NOW.  Local time is the process's
-- time zone (TZ).  Names of days and months are English whatever the
-- locale, as SK's documented outputs are.  Where SK .NET and SK Python
-- format differently, the format is the one SK documents for the function
-- ("Sunday, 12 January, 2031" for a date, "9:15 PM" in now and hour,
-- "-08:00" for the offset, "PST" for the zone).

local skein = require("skein")

local DAYS = { "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday" }
local MONTHS = { "January", "February", "March", "April", "May", "June", "July",
                 "August", "September", "October", "November", "December" }

local function bad(msg) error(skein.error("usage", msg), 0) end

-- The current instant and its local calendar fields.
local function local_now()
  local t = skein.now()
  return os.date("*t", t), t
end

local function hour12(h) return h % 12 == 0 and 12 or h % 12 end
local function ampm(h) return h < 12 and "AM" or "PM" end

-- "Sunday, 12 January, 2031" (SK's date, today, daysAgo, ...)
local function long_date(tm)
  return string.format("%s, %02d %s, %04d", DAYS[tm.wday], tm.day, MONTHS[tm.month], tm.year)
end

-- "Sunday, January 12, 2031 9:15 PM" (SK .NET's "f" in en-US)
local function full_date_time(tm)
  return string.format("%s, %s %d, %04d %d:%02d %s", DAYS[tm.wday], MONTHS[tm.month], tm.day,
                       tm.year, hour12(tm.hour), tm.min, ampm(tm.hour))
end

-- Days from 1970-01-01 to a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- The calendar fields of tm moved by `seconds` on its own wall clock, as
-- .NET's DateTimeOffset.AddDays does (the offset stays as it was).
local function shift(tm, seconds)
  local wall = days_from_civil(tm.year, tm.month, tm.day) * 86400
    + tm.hour * 3600 + tm.min * 60 + tm.sec + seconds
  local ok, t = pcall(os.date, "!*t", wall)
  if not ok or type(t) ~= "table" then bad("that date is out of range") end
  return t
end

local MAX_DAYS = 3650000 -- ten thousand years either way

local function days_ago(args, param)
  local raw = args[param]
  local n = tonumber(raw and raw:match("^%s*(.-)%s*$"))
  if not n or n ~= n then
    bad(string.format("%s must be a number of days, got %q", param, raw or ""))
  end
  if math.abs(n) > MAX_DAYS then
    bad(string.format("%s must be at most %d days either way", param, MAX_DAYS))
  end
  local tm = local_now()
  return long_date(shift(tm, -math.floor(n * 86400 + 0.5)))
end

local function last_matching_day(args, param)
  local want = (args[param] or ""):match("^%s*(.-)%s*$"):lower()
  local wday
  for i, name in ipairs(DAYS) do
    if name:lower() == want then wday = i end
  end
  if not wday then
    bad(string.format("%s must be an English day name (Monday ... Sunday), got %q",
                      param, args[param] or ""))
  end
  -- walk back from yesterday for up to a week, as SK does: on a Tuesday,
  -- "Tuesday" is a week ago
  local tm = local_now()
  for i = 1, 7 do
    local d = shift(tm, -i * 86400)
    if d.wday == wday then return long_date(d) end
  end
end

local function fn(description, run) return { description = description, run = run } end

local function offset()
  local z = os.date("%z", skein.now()) -- "+0100"
  local sign, hh, mm = z:match("^([+-])(%d%d)(%d%d)$")
  if not sign then return z end
  return sign .. hh .. ":" .. mm
end

local fns = {
  Date = fn("Get the current date", function() return long_date(local_now()) end),
  Today = fn("Get the current date", function() return long_date(local_now()) end),
  iso_date = fn("Get the current date in iso format.", function()
    local tm = local_now()
    return string.format("%04d-%02d-%02d", tm.year, tm.month, tm.day)
  end),
  Now = fn("Get the current date and time in the local time zone",
           function() return full_date_time(local_now()) end),
  UtcNow = fn("Get the current UTC date and time",
              function() return full_date_time(os.date("!*t", skein.now())) end),
  Time = fn("Get the current time", function()
    local tm = local_now()
    return string.format("%02d:%02d:%02d %s", hour12(tm.hour), tm.min, tm.sec, ampm(tm.hour))
  end),
  Year = fn("Get the current year", function() return string.format("%04d", local_now().year) end),
  Month = fn("Get the current month name", function() return MONTHS[local_now().month] end),
  MonthNumber = fn("Get the current month number",
                   function() return string.format("%02d", local_now().month) end),
  Day = fn("Get the current day of the month",
           function() return string.format("%02d", local_now().day) end),
  DayOfWeek = fn("Get the current day of the week", function() return DAYS[local_now().wday] end),
  Hour = fn("Get the current clock hour", function()
    local h = local_now().hour
    return string.format("%d %s", hour12(h), ampm(h))
  end),
  HourNumber = fn("Get the current clock 24-hour number",
                  function() return string.format("%02d", local_now().hour) end),
  Minute = fn("Get the minutes on the current hour",
              function() return string.format("%02d", local_now().min) end),
  Second = fn("Get the seconds on the current minute",
              function() return string.format("%02d", local_now().sec) end),
  TimeZoneOffset = fn("Get the local time zone offset from UTC", offset),
  TimeZoneName = fn("Get the local time zone name", function() return os.date("%Z", skein.now()) end),
  DaysAgo = {
    description = "Get the date offset by a provided number of days from today",
    parameters = { { name = "input", description = "The number of days to offset from today" } },
    run = function(args) return days_ago(args, "input") end,
  },
  DateMatchingLastDayName = {
    description = "Get the date of the last day matching the supplied week day name in English. "
      .. "Example: Che giorno era 'Martedi' scorso -> dateMatchingLastDayName 'Tuesday' => "
      .. "Tuesday, 16 May, 2023",
    parameters = { { name = "input", description = "The day name to match" } },
    run = function(args) return last_matching_day(args, "input") end,
  },
}

-- SK Python's names for the same functions
fns.month_number = fns.MonthNumber
fns.days_ago = {
  description = "Get the date of offset from today by a provided number of days",
  parameters = { { name = "days", description = "The number of days to offset from today" } },
  run = function(args) return days_ago(args, "days") end,
}
fns.date_matching_last_day_name = {
  description = "Get the date of the last day matching the supplied week day name in English.",
  parameters = { { name = "day_name", description = "The day name to match with." } },
  run = function(args) return last_matching_day(args, "day_name") end,
}

return fns
