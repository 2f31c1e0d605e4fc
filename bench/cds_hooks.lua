-- wrk script: POST /cds-services/ivig-order-sign, each call with its own signed JWT (a jti is
-- accepted once) read from TOKENS (a file, one a line: bench/cds_hooks_client.py token) and the
-- body from BODY (bench/cds_hooks_client.py order-sign). One wrk thread (-t1), so no two
-- requests share a token. RATE offers a fixed load as a Poisson stream (as bench/decisions.lua).
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local file = io.open(os.getenv("BODY")); local body = file:read("*a"); file:close()
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/cds-services/ivig-order-sign",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[((i - 1) % #tokens) + 1]}, body)
end
response = function(status)
  if status ~= 200 then io.stderr:write("status " .. status .. "\n") end
end
local rate = tonumber(os.getenv("RATE"))
if rate then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } cds_timespec;
    int clock_gettime(int clock, cds_timespec *now);
  ]]
  local clock = ffi.new("cds_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, clock)
    return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
  end
  local next_at
  delay = function()
    local now = now_ms()
    next_at = (next_at or now) - math.log(1 - math.random()) * 1000 / rate
    return math.max(0, next_at - now)
  end
end
