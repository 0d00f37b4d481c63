-- GET /v1/timeline?limit=20 as a random user.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

request = function()
  return wrk.format("GET", "/v1/timeline?limit=20", { ["Authorization"] = "Bearer " .. pick(tokens), ["x-api-key"] = api_key })
end
