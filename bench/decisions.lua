-- wrk script: POST /v1/decisions with a rotating mix of requests (codes, texts, facts).
-- The token comes from the environment: FORMULARY_TOKEN.
-- With RATE and CONNECTIONS set (the same number as wrk -c), it offers a fixed load instead of
-- as much as the server takes: every connection is an independent client that waits an
-- exponentially distributed pause before each request, so requests arrive as a Poisson stream
-- of RATE a second in all (less the connections' own waits for answers, a few per cent).
local bodies = {
  '{"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-1001"}}',
  '{"diagnosis": {"code": "M33.20"}, "patient": {"age_years": 50}, "therapies": {"concurrent": ["corticosteroids"]}}',
  '{"diagnosis": {"code": "D83.9"}, "patient": {"age_years": 30, "sex": "female"}, "product": "Privigen"}',
  '{"diagnosis": {"text": "Kawasaki disease"}, "patient": {"age_years": 3}}',
  '{"diagnosis": {"code": "G30.9"}, "patient": {"age_years": 80}}',
  '{"diagnosis": {"text": "wegeners granulomatosis"}, "patient": {"age_years": 52}}',
  '{"diagnosis": {"code": "D68.61"}, "patient": {"age_years": 31, "sex": "female", "pregnant": true}}',
  '{"diagnosis": {"code": "G61.81"}, "patient": {"age_years": 12}, "product": "Gamunex-C"}',
}
local token = os.getenv("FORMULARY_TOKEN")
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/decisions",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token},
    bodies[(i % #bodies) + 1])
end
response = function(status)
  if status ~= 201 then io.stderr:write("status " .. status .. "\n") end
end

local rate, connections = tonumber(os.getenv("RATE")), tonumber(os.getenv("CONNECTIONS"))
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
init = function(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
  i = math.random(#bodies)
end
if rate and connections then
  delay = function()   -- milliseconds before the next request on this connection
    return -math.log(1 - math.random()) * 1000 * connections / rate
  end
end
