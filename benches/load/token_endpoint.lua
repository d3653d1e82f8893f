-- wrk: POST /token, each request with the next form body of a file (client_credentials with a
-- fresh private_key_jwt assertion, i.e. a distinct jti). Run with one wrk thread so that no body
-- is sent twice; bodies used up wrap around and are refused as replays (counted as non-2xx).
local bodies = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
end

function request()
  i = i + 1
  if i > #bodies then
    i = 1
  end
  return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" }, bodies[i])
end
