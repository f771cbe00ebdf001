-- wrk script of `fleetstream bench ingest`: POST pre-generated JSON bodies (one per line of the
-- file given after `--`), count 202s and every other status, print one FLEETBENCH json line.
local bodies = {}
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
      bodies[#bodies + 1] = line
    end
  end
  next_body = math.random(#bodies)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  next_body = next_body % #bodies + 1
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
