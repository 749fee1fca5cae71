"""Generated gRPC stubs of the public API (`transferd.v1`), built from protos/ by the set-up step."""
