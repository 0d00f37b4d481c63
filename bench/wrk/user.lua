-- GET /v1/users/{id} for a random user.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

request = function()
  return wrk.format("GET", "/v1/users/" .. pick(users), { ["x-api-key"] = api_key })
end
