"""transferd: transfer learning as a service (the gRPC microservice)."""
