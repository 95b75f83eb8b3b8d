-- Reads and the floor: GET one path over and over (same run shape and report as bookings).
--
-- Arguments (after --): seconds=S path=/healthz [accept=ENCODINGS]
-- With accept=, every request sends it as its Accept-Encoding header.

local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local bench = dofile(here .. "common.lua")

bench.install(function(opts)
   local headers = nil
   if opts.accept and opts.accept ~= "" then
      headers = { ["Accept-Encoding"] = opts.accept }
   end
   local request = wrk.format("GET", opts.path or "/", headers)
   return function()
      return request
   end
end)
