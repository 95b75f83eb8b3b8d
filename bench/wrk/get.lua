-- Reads and the floor: GET one path over and over (same run shape and report as bookings).
--
-- Arguments (after --): seconds=S path=/healthz

local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local bench = dofile(here .. "common.lua")

bench.install(function(opts)
   local request = wrk.format("GET", opts.path or "/")
   return function()
      return request
   end
end)
