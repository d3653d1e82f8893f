-- wrk: every connection waits `delay_ms` (first script argument) after each response before its
-- next request, so all targets get the same offered load (about connections / (delay + latency)
-- requests per second) and their latencies can be compared at that load, not at saturation.
local delay_ms = 4

function init(args)
  if args[1] then
    delay_ms = tonumber(args[1])
  end
end

function delay()
  return delay_ms
end
