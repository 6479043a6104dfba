-- responses_sse_c32: streamed OpenAI Responses API (SSE with event: lines).
-- wrk -t1 -c32 -d10s --latency -s bench/responses_sse.lua http://HOST:PORT/v1/responses
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
wrk.body = '{"model":"gpt-4o-mini","stream":true,"instructions":"You are a terse assistant.","input":"Say hello to the benchmark in a few words.","max_output_tokens":64}'
