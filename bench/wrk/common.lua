-- Shared by booking.lua and get.lua (loaded with dofile): the run's shape and its report.
--
-- Every run has a load phase of `seconds=S` seconds, then a drain: no new request is
-- sent (delay() holds every connection back), the requests in flight are answered, and
-- each thread stops itself once it has no request left in flight. wrk's own -d is only
-- an upper bound; bench.compare interrupts wrk (SIGINT) once every thread has stopped.
-- So every request that was sent got its answer counted, which the booking checks need.
--
-- Per thread it counts requests sent, responses, and responses by status. done() prints
-- one line "BENCH_JSON {...}" with those counts, the latency percentiles, every latency
-- recorded with its count, and wrk's summary (socket errors, timeouts, non-2xx/3xx in
-- errors.status).

local M = {}

local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
   ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clock_id, bench_timespec *tp);
   ]]
   local ts = ffi.new("bench_timespec")
   M.now = function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
   end
else
   M.now = os.time -- whole seconds only: good enough as a fallback
end

-- "key=value" script arguments (args[0] is wrk's URL).
function M.options(args)
   local opts = {}
   for i = 1, #args do
      local key, value = string.match(args[i], "^([%w_]+)=(.*)$")
      if key then
         opts[key] = value
      end
   end
   return opts
end

-- A table whose keys are exactly 1..n (n > 0): encoded as a JSON array.
local function is_list(t)
   local n, seen = #t, 0
   for _ in pairs(t) do
      seen = seen + 1
   end
   return n > 0 and seen == n
end

local function encode(value)
   local kind = type(value)
   if kind == "table" and is_list(value) then
      local items = {}
      for i = 1, #value do
         items[i] = encode(value[i])
      end
      return "[" .. table.concat(items, ",") .. "]"
   elseif kind == "table" then
      local parts = {}
      for k, v in pairs(value) do
         parts[#parts + 1] = string.format("%q:%s", tostring(k), encode(v))
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif kind == "number" then
      if value ~= value or value == math.huge or value == -math.huge then
         return "null"
      end
      return string.format("%.17g", value)
   elseif kind == "string" then
      return string.format("%q", value)
   elseif kind == "boolean" then
      return tostring(value)
   end
   return "null"
end
M.encode = encode

-- Install wrk's hooks. `make_request(opts)` runs once per thread (in init) and returns
-- the function that builds each request.
function M.install(make_request)
   local threads = {}

   function setup(thread)
      threads[#threads + 1] = thread
      thread:set("thread_id", #threads)
   end

   local build
   local stop_at = math.huge
   local hold_ms = 3600 * 1000

   -- Per-thread counters (globals, so that done() can read them with thread:get).
   sent, answered = 0, 0
   statuses = {}

   -- Connections that delay() let go but whose request() has not run yet: they send
   -- after all, so a thread is drained only when none is left either.
   scheduled = 0
   stopped_after = -1

   local function drained()
      return sent == answered and scheduled == 0 and M.now() >= stop_at
   end

   local function stop()
      if stopped_after < 0 then
         stopped_after = M.now() - stop_at
      end
      wrk.thread:stop()
   end

   function init(args)
      local opts = M.options(args)
      stop_at = M.now() + tonumber(opts.seconds or "10")
      build = make_request(opts)
   end

   -- wrk calls request() once in its main thread, before any load, to see what a
   -- request looks like (the first thread's state): that call sends nothing.
   local running = false

   function delay()
      running = true
      if M.now() >= stop_at then
         if drained() then
            stop()
         end
         return hold_ms
      end
      scheduled = scheduled + 1
      return 0
   end

   function request()
      if running then
         if scheduled > 0 then
            scheduled = scheduled - 1
         end
         sent = sent + 1
      end
      return build()
   end

   function response(status, headers, body)
      answered = answered + 1
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
      if drained() then
         stop()
      end
   end

   function done(summary, latency, requests)
      local total_sent, total_answered, by_status, drain_s = 0, 0, {}, {}
      for _, thread in ipairs(threads) do
         total_sent = total_sent + (thread:get("sent") or 0)
         total_answered = total_answered + (thread:get("answered") or 0)
         drain_s[#drain_s + 1] = thread:get("stopped_after")
         for code, n in pairs(thread:get("statuses") or {}) do
            by_status[code] = (by_status[code] or 0) + n
         end
      end
      local percentiles = {}
      for _, p in ipairs({ 50, 75, 90, 99, 99.9 }) do
         percentiles[tostring(p)] = latency:percentile(p) / 1000.0
      end
      -- Every latency recorded (microseconds) and how often: runs of one target
      -- (bench.compare's rounds) are merged from these, percentiles included.
      local values, counts = {}, {}
      for i = 1, #latency do
         values[i], counts[i] = latency(i)
      end
      local report = {
         duration_s = summary.duration / 1e6,
         requests = summary.requests,
         bytes = summary.bytes,
         errors = {
            connect = summary.errors.connect,
            read = summary.errors.read,
            write = summary.errors.write,
            status = summary.errors.status,
            timeout = summary.errors.timeout,
         },
         sent = total_sent,
         answered = total_answered,
         statuses = by_status,
         -- per thread: seconds from the end of the load until it stopped (-1: never did)
         drain_s = drain_s,
         latency_ms = {
            min = latency.min / 1000.0,
            max = latency.max / 1000.0,
            mean = latency.mean / 1000.0,
            stdev = latency.stdev / 1000.0,
            percentiles = percentiles,
         },
         latency_us = { values = values, counts = counts },
      }
      io.write("BENCH_JSON " .. encode(report) .. "\n")
   end
end

return M
