-- wrk script of `fleetstream bench ingest`: POST pre-generated JSON bodies (one per line of the
-- file given after `--`), count 202s and every other status, print one FLEETBENCH json line.
-- A line `<token>\t<body>` sends the device's token in X-API-Key (bench/secure.py).
local bodies = {}
local tokens = {}
local next_body = 0
accepted = 0
other = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      local tab = string.find(line, "\t", 1, true)
      if tab then
        tokens[#bodies + 1] = string.sub(line, 1, tab - 1)
        line = string.sub(line, tab + 1)
      end
      bodies[#bodies + 1] = line
    end
  end
  next_body = math.random(#bodies)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  next_body = next_body % #bodies + 1
  local token = tokens[next_body]
  if token then
    local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = token}
    return wrk.format(nil, nil, headers, bodies[next_body])
  end
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total_accepted, total_other = 0, 0
  for _, thread in ipairs(threads) do
    total_accepted = total_accepted + thread:get("accepted")
    total_other = total_other + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'FLEETBENCH {"accepted": %d, "other": %d, "requests": %d, "duration_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, ' ..
    '"p50_us": %.1f, "p95_us": %.1f, "p99_us": %.1f}\n',
    total_accepted, total_other, summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
