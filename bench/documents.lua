-- D1 / D50: POST /v1/documents, a factura (bench/factura.json, type "01": one
-- line, 15 % IVA, one payment, for a final consumer), signed by the server
-- before its 201, with the tenant's key (BENCH_TOKEN).
-- BENCH_ISSUERS is a comma-separated list of issuer ids. With one id every
-- request is the same (wrk builds it once); with several, each request takes
-- the next id round-robin (each thread starts at its own offset).
local token = assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN is not set")
local issuers = {}
for id in string.gmatch(assert(os.getenv("BENCH_ISSUERS"), "BENCH_ISSUERS is not set"), "%d+") do
    issuers[#issuers + 1] = id
end
assert(#issuers > 0, "BENCH_ISSUERS names no issuer")

wrk.method = "POST"
-- The factura, from bench/factura.json (scripts/bench runs from the repository's root).
local file = assert(io.open("bench/factura.json", "r"), "bench/factura.json is missing")
wrk.body = file:read("*a"):gsub("%s+$", "")
file:close()
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Issuer-Id"] = issuers[1]

if #issuers > 1 then
    local threads = 0
    function setup(thread)
        thread:set("offset", threads)
        threads = threads + 1
    end

    local position = 0
    function init(args)
        position = (offset or 0) * 7
    end

    function request()
        position = position + 1
        wrk.headers["X-Issuer-Id"] = issuers[(position % #issuers) + 1]
        return wrk.format()
    end
end
