"""Generated protobuf and gRPC stubs (scripts/gen_protos). Never edit by hand."""
