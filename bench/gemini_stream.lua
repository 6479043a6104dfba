-- gemini_stream_c32: streamed Gemini generateContent (SSE).
-- wrk -t1 -c32 -d10s --latency -s bench/gemini_stream.lua \
--   'http://HOST:PORT/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-goog-api-key"] = os.getenv("BENCH_KEY") or "none"
wrk.body = '{"systemInstruction":{"parts":[{"text":"You are a terse assistant."}]},"contents":[{"role":"user","parts":[{"text":"Say hello to the benchmark in a few words."}]}],"generationConfig":{"maxOutputTokens":64}}'
