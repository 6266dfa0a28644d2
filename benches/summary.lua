-- wrk script: prints one machine-readable summary line at the end of a run.
-- Used by benches/vs-nginx.sh (alone, or pulled in by random.lua).
--   FSB requests=… bytes=… duration_us=… p50_us=… p99_us=… connect=… read=… write=… status=… timeout=…
-- Latencies are in microseconds (wrk's unit); "status" counts responses with status > 399.

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "FSB requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
