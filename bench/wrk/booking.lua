-- Bookings: POST one attendee on one event per request, as ours and the baseline take it.
--
-- Arguments (after --): seconds=S tokens=FILE event=ID prefix=P threads=T [path=/api/orders]
-- Each request carries a unique Idempotency-Key (prefix-thread-counter) and the bearer
-- token of the next account in the token file, so bookings spread over the accounts.

local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local bench = dofile(here .. "common.lua")

bench.install(function(opts)
   local tokens = {}
   local path_to_tokens = assert(opts.tokens, "tokens=FILE is required")
   for line in io.lines(path_to_tokens) do
      if #line > 0 then
         tokens[#tokens + 1] = "Bearer " .. line
      end
   end
   assert(#tokens > 0, "the token file is empty")
   local event = assert(opts.event, "event=ID is required")
   local prefix = opts.prefix or "wrk"
   local path = opts.path or "/api/orders"
   local stride = tonumber(opts.threads or "1")
   local id = thread_id or 1
   local body = '{"items":[{"event_id":"' .. event .. '","attendees":[{"name":"Bench Guest"}]}]}'
   local headers = { ["Content-Type"] = "application/json" }
   local counter = 0
   return function()
      counter = counter + 1
      headers["Authorization"] = tokens[((counter * stride + id) % #tokens) + 1]
      headers["Idempotency-Key"] = prefix .. "-" .. id .. "-" .. counter
      return wrk.format("POST", path, headers, body)
   end
end)
