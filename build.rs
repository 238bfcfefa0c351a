//! Compiles our own subset of Teleport's Auth API (`proto/`) with protox, so no system `protoc`
//! is needed. Server stubs are generated too: the fake Teleport in `src/sim` implements them.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/teleport/wrappers.proto",
        "proto/teleport/types.proto",
        "proto/teleport/authservice.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
