//! Benchmark tools for `bench/run.py`: `bench-data` fills a database with a realistic
//! graph through the store layer, `bench-hello` is the same-run baseline server.
