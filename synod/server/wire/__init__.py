"""synod's gRPC server: gRPC over HTTP/2 on the h2 library, serving raw request and response bytes."""
