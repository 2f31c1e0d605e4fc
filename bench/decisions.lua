-- wrk script: POST /v1/decisions with a rotating mix of requests (codes, texts, facts).
-- The token comes from the environment: FORMULARY_TOKEN.
-- With RATE set, it offers a fixed load instead of as much as the server takes: requests are
-- scheduled on a clock as a Poisson stream of RATE a second (exponential gaps, independent of
-- when answers come), and a free connection sends the next one when its time comes. Run it
-- with one wrk thread (-t1; one thread sends thousands a second) and enough connections that
-- one is always free, since wrk times a request from when it is sent.
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

local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
init = function(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
  i = math.random(#bodies)
end

local rate = tonumber(os.getenv("RATE"))
if rate then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *now);
  ]]
  local clock = ffi.new("bench_timespec")
  local function now_ms()   -- CLOCK_MONOTONIC
    ffi.C.clock_gettime(1, clock)
    return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
  end
  local next_at
  delay = function()   -- milliseconds until the next scheduled request
    local now = now_ms()
    next_at = (next_at or now) - math.log(1 - math.random()) * 1000 / rate
    return math.max(0, next_at - now)
  end
end
