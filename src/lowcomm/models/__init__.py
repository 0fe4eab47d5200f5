"""Model architectures of the papers lowcomm reproduces, with seeded initialisation.

`char_transformer` is the small causal character transformer of the low-communication
data-centre workload; `block_of` maps its parameter names to transformer blocks.
"""

from lowcomm.models.functional import FlatTrainer, ModelFn
from lowcomm.models.transformer import CharTransformer, block_of, char_transformer
from lowcomm.models.zoo import (
    CharLSTM,
    ModelSpec,
    char_lstm,
    cnn_fedavg,
    cnn_femnist,
    init_params,
    logistic_regression,
    mlp_2nn,
)

__all__ = [
    "CharLSTM",
    "CharTransformer",
    "FlatTrainer",
    "ModelFn",
    "ModelSpec",
    "block_of",
    "char_lstm",
    "char_transformer",
    "cnn_fedavg",
    "cnn_femnist",
    "init_params",
    "logistic_regression",
    "mlp_2nn",
]
