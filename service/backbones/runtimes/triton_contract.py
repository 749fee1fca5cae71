"""What the gateway sends a Triton model and expects back, checked against Triton's metadata.

Checked at start-up and again whenever Triton comes back, so that a gateway never serves vectors
of a model other than the one its card (and so every head bound to it) describes.
"""

from __future__ import annotations

from tritonclient.grpc import service_pb2
from tritonclient.utils import np_to_triton_dtype

from service.backbones.card import BackboneCard
from service.backbones.modalities.tensors import TensorSpec
from service.backbones.runtimes.base import BackboneLoadError


def check_metadata(
    card: BackboneCard,
    tensors: dict[str, TensorSpec],
    meta: service_pb2.ModelMetadataResponse,
    max_batch_size: int,
) -> None:
    """Refuses a Triton model whose inputs, dtypes or output dimension differ from the card.

    Raises:
        BackboneLoadError: naming the first difference.
    """
    where = f"{card.name} on Triton"
    if max_batch_size < 1:
        raise BackboneLoadError(
            f"{where}: max_batch_size is {max_batch_size}; batching is required"
        )
    inputs = {tensor.name: tensor for tensor in meta.inputs}
    if set(inputs) != set(card.input_names):
        raise BackboneLoadError(f"{where}: inputs {sorted(inputs)} != card {card.input_names}")
    for name in card.input_names:
        tensor = inputs[name]
        want = np_to_triton_dtype(tensors[name].dtype)
        if tensor.datatype != want:
            raise BackboneLoadError(f"{where}: input {name} is {tensor.datatype}, not {want}")
        dims = list(tensor.shape)[1:]  # the first axis is the batch axis
        sent = list(tensors[name].dims)
        if len(dims) != len(sent) or any(
            d != -1 and d != s for d, s in zip(dims, sent, strict=True)
        ):
            raise BackboneLoadError(f"{where}: input {name} takes dims {dims}, we send {sent}")
    outputs = {tensor.name: tensor for tensor in meta.outputs}
    output = outputs.get(card.output_name)
    if output is None:
        raise BackboneLoadError(f"{where}: no output {card.output_name} (has {sorted(outputs)})")
    if output.datatype != "FP32" or list(output.shape)[-1:] != [card.dim]:
        raise BackboneLoadError(
            f"{where}: output {card.output_name} is {output.datatype}{list(output.shape)}, "
            f"not FP32 [-1, {card.dim}]"
        )
