// Compiles cerflow's own API and its Kafka aggregates format (proto/) with a pure-Rust
// protobuf compiler, so building needs no system protoc. OTLP types come from the opentelemetry-proto crate.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "cerflow/v1/score.proto",
            "cerflow/aggregates/v1/partials.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
