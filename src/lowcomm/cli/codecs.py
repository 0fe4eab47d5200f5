"""Codec specifications on the command line and in config files: the codec registry.

    SPEC    := CODEC ("+" STAGE)* ("," WRAPPER)*
    CODEC   := NAME (":" ARG)*          ARG is a number or key=value
    STAGE   := kmeans:K | huffman
    WRAPPER := ef | dgc[:MOMENTUM] | ef21

Examples: `fp16`, `fp4` (4-bit E3M0, one scale per message), `fp4:block=64`,
`qsgd:15`, `qsgd:15:bucket=512`, `topk:0.01`, `topk:0.01:encoding=rice`,
`randk:0.1`, `terngrad`, `sign`, `kmeans:16`, `powersgd:2`; FedZip as
`topk:0.2+kmeans:3+huffman` (top-z sparsification, k-means on the kept values, Huffman-coded
assignments); `topk:0.01,ef` (top-k with error feedback); `topk:0.01,dgc:0.9` (Deep Gradient
Compression: momentum correction and factor masking around top-k); `topk:0.01,ef21` (EF21: its
payloads are increments the receiver accumulates, so only `--algorithm ef21` accepts it).
"""

from __future__ import annotations

from collections.abc import Callable

from lowcomm import compress
from lowcomm.cli.config import ConfigError
from lowcomm.compress import Codec

CODEC_HELP = ("fp32, fp16, bf16, fp4[:block=N], qsgd:S[:bucket=N], terngrad, sign, "
              "topk:F[:encoding=E][:per_layer=1], randk:F[:unbiased=0], kmeans:K, powersgd:R; "
              "stages +kmeans:K, "
              "+huffman (e.g. topk:0.2+kmeans:3+huffman); wrappers ,ef ,dgc:M ,ef21 (algorithm "
              "ef21 only)")


def _args(name: str, raw: list[str]) -> tuple[list[float], dict[str, str]]:
    positional, options = [], {}
    for item in raw:
        if "=" in item:
            key, value = item.split("=", 1)
            options[key] = value
        else:
            try:
                positional.append(float(item))
            except ValueError:
                raise ConfigError(f"codec {name}: argument {item!r} is not a number or "
                                  "key=value") from None
    return positional, options


def _flag(options: dict[str, str], key: str, default: bool) -> bool:
    value = options.pop(key, None)
    return default if value is None else value not in ("0", "false", "no")


def _int(name: str, value: float) -> int:
    if value != int(value):
        raise ConfigError(f"codec {name}: expected an integer; got {value:g}")
    return int(value)


CodecMaker = Callable[[list[float], dict[str, str]], Codec]

CODECS: dict[str, tuple[int, CodecMaker]] = {  # name -> (positional arguments, maker)
    "fp32": (0, lambda p, o: compress.fp32()),
    "fp16": (0, lambda p, o: compress.fp16()),
    "bf16": (0, lambda p, o: compress.bf16()),
    "fp4": (0, lambda p, o: compress.fp4(
        block_size=_int("fp4", float(o.pop("block"))) if "block" in o else None)),
    "terngrad": (0, lambda p, o: compress.terngrad()),
    "sign": (0, lambda p, o: compress.scaled_sign()),
    "qsgd": (1, lambda p, o: compress.qsgd(
        _int("qsgd", p[0]),
        bucket_size=_int("qsgd", float(o.pop("bucket"))) if "bucket" in o else None)),
    "topk": (1, lambda p, o: compress.topk(p[0], index_encoding=o.pop("encoding", "auto"),
                                           per_layer=_flag(o, "per_layer", False))),
    "randk": (1, lambda p, o: compress.randk(p[0], unbiased=_flag(o, "unbiased", True))),
    "kmeans": (1, lambda p, o: compress.kmeans(_int("kmeans", p[0]))),
    "powersgd": (1, lambda p, o: compress.powersgd(_int("powersgd", p[0]))),
}

WRAPPERS: dict[str, tuple[int, Callable[[Codec, list[float]], Codec]]] = {  # (most numbers, wrap)
    "ef": (0, lambda codec, p: compress.error_feedback(codec)),
    "dgc": (1, lambda codec, p: compress.dgc(codec, momentum=p[0] if p else 0.9)),
    "ef21": (0, lambda codec, p: compress.ef21(codec)),
}

STAGES: dict[str, tuple[int, CodecMaker]] = {
    "kmeans": (1, lambda p, o: compress.kmeans_stage(_int("kmeans", p[0]))),
    "huffman": (0, lambda p, o: compress.huffman_stage()),
}


def _build(table: dict, part: str, what: str):
    name, *raw = part.strip().split(":")
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}; known: {', '.join(table)}")
    arity, make = table[name]
    positional, options = _args(name, raw)
    if len(positional) != arity:
        raise ConfigError(f"{what} {name} takes {arity} number(s); got {len(positional)} "
                          f"in {part!r}")
    try:
        built = make(positional, options)
    except ValueError as err:
        raise ConfigError(f"{what} {part!r}: {err}") from None
    if options:
        raise ConfigError(f"{what} {name}: unknown option(s) {sorted(options)}")
    return built


def parse_codec(spec: str) -> Codec:
    """A codec from its specification (see the module docstring)."""
    if not spec or not spec.strip():
        raise ConfigError("codec specification is empty")
    body, *wrappers = spec.split(",")
    first, *stages = body.split("+")
    codec = _build(CODECS, first, "codec")
    if stages:
        codec = compress.chain(codec, *(_build(STAGES, s, "stage") for s in stages))
    for wrapper in wrappers:
        name, *raw = wrapper.strip().split(":")
        if name not in WRAPPERS:
            raise ConfigError(f"unknown wrapper {name!r}; known: {', '.join(WRAPPERS)}")
        most, wrap = WRAPPERS[name]
        positional, options = _args(name, raw)
        if options or len(positional) > most:
            raise ConfigError(f"wrapper {wrapper!r}: expected {name}"
                              f"{'[:MOMENTUM]' if most else ''}")
        try:
            codec = wrap(codec, positional)
        except ValueError as err:
            raise ConfigError(f"wrapper {wrapper!r}: {err}") from None
    return codec
