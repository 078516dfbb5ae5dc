//! Benchmark driver (placeholder until the benchmark harness lands).
fn main() {}
