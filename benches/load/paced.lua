-- wrk: every connection waits a random 0 to 2 x `delay_ms` (first script argument; mean
-- `delay_ms`) after each response before its next request, so all targets get the same offered
-- load (about connections / (delay + latency) requests per second) and their latencies can be
-- compared at that load, not at saturation. The pause is random so that the connections do not
-- fire in lock-step bursts, which would measure how long a burst takes to drain instead.
local delay_ms = 4

function init(args)
  if args[1] then
    delay_ms = tonumber(args[1])
  end
end

function delay()
  return math.random(0, 2 * delay_ms)
end
