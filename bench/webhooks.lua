-- wrk script: POST one signed push payload with a unique delivery id per request.
-- Env: BENCH_BODY (path), BENCH_SIGNATURE, BENCH_DELAY_MS (0: as fast as possible).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "push"
  wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_SIGNATURE")
  delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
  run = os.getenv("BENCH_RUN") or "run"
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = run .. "-" .. tid .. "-" .. counter
  return wrk.format()
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %.3f, "status_errors": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
