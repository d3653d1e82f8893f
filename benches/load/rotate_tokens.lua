-- wrk: every request carries the next bearer token of a file (one per line), so the gateway sees
-- thousands of distinct tokens: cache misses at first, then hits as the list comes round again.
local tokens = {}
local next_index = 1

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  next_index = math.random(#tokens)
end

function request()
  next_index = next_index % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[next_index] })
end
