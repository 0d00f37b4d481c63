-- POST /v1/auth/token with a wrong password for a random bench user: a login flood.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local count = tonumber(os.getenv("BENCH_USER_COUNT"))

request = function()
  local body = '{"email":"user' .. math.random(0, count - 1)
    .. '@bench.test","password":"not the bench password"}'
  return wrk.format("POST", "/v1/auth/token", {
    ["Content-Type"] = "application/json",
    ["x-api-key"] = api_key,
  }, body)
end
