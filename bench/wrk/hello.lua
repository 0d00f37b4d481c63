-- GET / on the bare poem baseline.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")
