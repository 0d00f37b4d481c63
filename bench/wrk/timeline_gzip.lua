-- GET /v1/timeline?limit=20 as a random user, accepting gzip (timeline.lua without it is
-- the other half of the comparison). wrk does not inflate: what is measured is the server.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

request = function()
  return wrk.format("GET", "/v1/timeline?limit=20", {
    ["Authorization"] = "Bearer " .. pick(tokens),
    ["x-api-key"] = api_key,
    ["Accept-Encoding"] = "gzip",
  })
end
