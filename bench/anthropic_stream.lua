-- anthropic_stream_c32: streamed Anthropic Messages API.
-- wrk -t1 -c32 -d10s --latency -s bench/anthropic_stream.lua http://HOST:PORT/v1/messages
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["x-api-key"] = os.getenv("BENCH_KEY") or "none"
wrk.body = '{"model":"claude-haiku-4-5","stream":true,"max_tokens":64,"system":"You are a terse assistant.","messages":[{"role":"user","content":"Say hello to the benchmark in a few words."}]}'
