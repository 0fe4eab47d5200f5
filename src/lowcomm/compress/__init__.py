"""Compressors for what crosses a link. Every codec passes the payload contract.

- containers and composition: `Codec`, `chain`, `Stage`, `expect`;
- dense: `fp32`, `fp16`, `bf16`; 4-bit floats `fp4` (E3M0 with a float32 scale per block);
- quantizers: `qsgd`, `terngrad`, `scaled_sign`, and `kmeans` (FedZip's Lloyd quantizer);
- sparsifiers: `topk` (index encodings raw, bitmap, Elias-gamma, Golomb-Rice, auto), `randk`;
- low rank: `powersgd`;
- a few scalars per message: `int8_scalars` (one byte each), `fp32_scalars`;
- memory wrappers: `error_feedback`, `dgc` (momentum correction and factor masking), `ef21`
  (a tracked estimate; its decode is an increment the receiver accumulates);
- payload stages: `kmeans_stage`, `huffman_stage`
  (`chain(topk(0.2), kmeans_stage(3), huffman_stage())` is FedZip);
- `analytic`: the papers' bit formulas, a cross-check beside measured bytes.
"""

from lowcomm.compress import analytic
from lowcomm.compress.casts import bf16, fp16
from lowcomm.compress.chain import ChainState, Stage, chain
from lowcomm.compress.codec import Codec, Persist, expect, fp32
from lowcomm.compress.entropy import huffman_stage
from lowcomm.compress.feedback import dgc, ef21, error_feedback
from lowcomm.compress.fp4 import fp4
from lowcomm.compress.kmeans import kmeans, kmeans_stage
from lowcomm.compress.lowrank import PowerSGDState, powersgd
from lowcomm.compress.quantize import qsgd, scaled_sign, terngrad
from lowcomm.compress.scalars import ScalarQuantizer, fp32_scalars, int8_scalars
from lowcomm.compress.sparse import randk, topk

__all__ = [
    "ChainState",
    "Codec",
    "Persist",
    "PowerSGDState",
    "ScalarQuantizer",
    "Stage",
    "analytic",
    "bf16",
    "chain",
    "dgc",
    "ef21",
    "error_feedback",
    "expect",
    "fp4",
    "fp16",
    "fp32",
    "fp32_scalars",
    "huffman_stage",
    "int8_scalars",
    "kmeans",
    "kmeans_stage",
    "powersgd",
    "qsgd",
    "randk",
    "scaled_sign",
    "terngrad",
    "topk",
]
