-- wrk: a mix of what a gateway in front of a paying API meets, one kind after another per
-- connection: valid tokens (with the right and the wrong scope), garbage and expired-looking
-- tokens, no token, traversal attempts, junk registrations and token requests.
local tokens = {}
local n = 0

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  n = math.random(1000)
end

local junk_doc = '{"client_name":"x","jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"BBBB"}]}}'

function request()
  n = n + 1
  local k = n % 10
  local token = tokens[(n % #tokens) + 1]
  if k <= 3 then
    return wrk.format("GET", "/observations", { ["Authorization"] = "Bearer " .. token })
  elseif k == 4 then
    return wrk.format("POST", "/observations", { ["Authorization"] = "Bearer " .. token }, '{"rain":1}')
  elseif k == 5 then
    return wrk.format("GET", "/observations", { ["Authorization"] = "Bearer " .. token:sub(1, -5) .. "AAAA" })
  elseif k == 6 then
    return wrk.format("GET", "/observations", nil)
  elseif k == 7 then
    return wrk.format("GET", "/public/..;/observations", nil)
  elseif k == 8 then
    return wrk.format("POST", "/register", { ["Content-Type"] = "application/json" }, junk_doc)
  else
    return wrk.format("POST", "/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" .. token)
  end
end
