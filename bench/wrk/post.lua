-- POST /v1/tweets as a random user.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local n = 0
request = function()
  n = n + 1
  local body = '{"text":"benchmark tweet ' .. n .. '"}'
  return wrk.format("POST", "/v1/tweets", {
    ["Authorization"] = "Bearer " .. pick(tokens),
    ["Content-Type"] = "application/json",
    ["x-api-key"] = api_key,
  }, body)
end
