-- tests/bench/bench.lua: the wrk script of the benches (see docs/bench.md).
--
--   wrk ... -s bench.lua URL -- health
--   wrk ... -s bench.lua URL -- totp DIR AUTH_KEY
--
-- Both modes go through the same code (request() hands out a request made
-- beforehand, response() looks at the answer), so the /health baseline and
-- the TOTP run cost the client the same.
--
-- totp: wrk thread N walks DIR/bodies-N.txt (one JSON body a line, each a
-- fresh one-time code) and sends each body once. When its bodies are all
-- answered it stops and notes when (t_end); if it still has to send
-- something before that it sends GET /health (counted as overrun). The
-- driver turns t_end into the time the run really took.
--
-- done() prints one line "MFA_BENCH {json}" for the driver.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } mfa_bench_ts;
int clock_gettime(int clk, mfa_bench_ts *ts);
]]
local ts = ffi.new("mfa_bench_ts")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- Per thread (each wrk thread has its own Lua state); globals so that
-- done() can read them with thread:get().
local reqs, health_req
function init(args)
  mode = args[1]
  reqs = {}
  health_req = wrk.format("GET", "/health")
  if mode == "totp" then
    local headers = { ["Authorization"] = "Bearer " .. args[3],
                      ["Content-Type"] = "application/json" }
    for line in io.lines(args[2] .. "/bodies-" .. tid .. ".txt") do
      reqs[#reqs + 1] = wrk.format("POST", "/api/v1/auth", headers, line)
    end
  elseif mode ~= "health" then
    error("bench.lua: mode must be health or totp")
  end
  nreq = #reqs
  next_i = 1
  -- wrk calls request() once in the first thread before the run, only to
  -- parse what it returns (script_verify_request): that call gets no body.
  verify_pending = (tid == 1)
  answered, accepted, other, overrun = 0, 0, 0, 0
  samples, nsamples = "", 0
  t_start, t_end = now(), 0
end

function request()
  if mode == "health" then
    return health_req
  end
  if verify_pending then
    verify_pending = false
    return health_req
  end
  if next_i <= nreq then
    local r = reqs[next_i]
    next_i = next_i + 1
    return r
  end
  overrun = overrun + 1
  return health_req
end

function response(status, headers, body)
  if mode == "health" then
    return
  end
  local result = string.match(body, '"result"%s*:%s*"(%a+)"')
  if not result and string.find(body, '"status"', 1, true) then
    return -- the answer to a GET /health (overrun); sign-in answers have no "status"
  end
  answered = answered + 1
  if status == 200 and result == "accepted" then
    accepted = accepted + 1
  else
    other = other + 1
    if nsamples < 3 then
      nsamples = nsamples + 1
      samples = samples .. status .. " " .. string.sub(body, 1, 300) .. "\n"
    end
  end
  if answered >= nreq then
    t_end = now()
    wrk.thread:stop()
  end
end

local function jstr(s)
  s = string.gsub(tostring(s), '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    parts[#parts + 1] = string.format(
      '{"nreq":%d,"answered":%d,"accepted":%d,"other":%d,"overrun":%d,'
      .. '"elapsed":%.6f,"samples":%s}',
      t:get("nreq"), t:get("answered"), t:get("accepted"), t:get("other"), t:get("overrun"),
      t:get("t_end") > 0 and (t:get("t_end") - t:get("t_start")) or -1, jstr(t:get("samples")))
  end
  local e = summary.errors
  io.write(string.format(
    'MFA_BENCH {"mode":%s,"duration_us":%d,"requests":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d},"threads":[%s]}\n',
    jstr(threads[1]:get("mode")), summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), table.concat(parts, ",")))
end
