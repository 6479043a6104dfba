-- chat_stream_c32: streamed OpenAI chat completion with the usage chunk (16 content chunks).
-- wrk -t1 -c32 -d10s --latency -s bench/chat_stream.lua http://HOST:PORT/v1/chat/completions
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
wrk.body = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Say hello to the benchmark in a few words."}],"max_tokens":64}'
