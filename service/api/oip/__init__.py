"""The Open Inference Protocol v2 (KServe's `inference.GRPCInferenceService`) on transferd's port.

A model is a backbone (every tenant sees the same ones) or a head of the caller's tenant. The
servicer only converts: inference goes through the Embedder and the Predictor, as Embed and
Predict do. `signatures` says which tensors each model takes and returns, `tensors` reads and
writes tensor data, `outputs` turns predictions into tensors, `models` finds a model by name.
"""
