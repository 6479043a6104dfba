-- chat_c1 / chat_c32: non-streaming OpenAI chat completion.
-- wrk -t1 -c32 -d10s --latency -s bench/chat.lua http://HOST:PORT/v1/chat/completions
-- The key comes from $BENCH_KEY (run.py sets it; the fake upstream ignores it).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Say hello to the benchmark in a few words."}],"max_tokens":64}'
