"""Transport: servicers, interceptors and pb ⇄ domain converters. The only place that knows protobuf."""
