"""One schema per command config (`conf/<name>.yaml`): the type, range and help of every key."""

from __future__ import annotations

from .ablate import AblateConfig
from .distill import DistillConfig
from .diversity import DiversityConfig
from .fid import FidConfig
from .generate import GenerateConfig
from .report import ReportConfig
from .train_lora import TrainLoraConfig
from .train_toy import TrainToyConfig
from .transfer_lora import TransferLoraConfig
from .x0viz import X0vizConfig

SCHEMAS: dict[str, type] = {
    "generate": GenerateConfig,
    "x0viz": X0vizConfig,
    "diversity": DiversityConfig,
    "fid": FidConfig,
    "transfer_lora": TransferLoraConfig,
    "train_lora": TrainLoraConfig,
    "train_toy": TrainToyConfig,
    "distill": DistillConfig,
    "ablate": AblateConfig,
    "report": ReportConfig,
}
