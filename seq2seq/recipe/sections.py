"""The recipe's sections as typed dataclasses; component fields are marked with their kind."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal


@dataclass(frozen=True)
class Component:
    """Marks a recipe field as a component spec of a registry kind."""

    kind: str


Spec = str | dict[str, Any]
EncoderSpec = Annotated[Spec, Component("encoder")]
AttentionSpec = Annotated[Spec, Component("attention")]
DecoderSpec = Annotated[Spec, Component("decoder")]
SearchSpec = Annotated[Spec, Component("search")]
MetricSpec = Annotated[Spec, Component("metric")]
TokenizerSpec = Annotated[Spec, Component("tokenizer")]
OptimizerSpec = Annotated[Spec, Component("optimizer")]
SchedulerSpec = Annotated[Spec, Component("scheduler")]
LOSS_METRICS = {"loss": False, "ppl": False}  # name → higher is better


@dataclass
class Corpus:
    """One split: two line-aligned text files, one TSV file, or a Hugging Face `datasets` source."""

    source: str | None = None  # text file, one segment per line
    target: str | None = None  # text file aligned line by line with `source`
    tsv: str | None = None  # one file instead: source<TAB>target on each line
    dataset: str | None = None  # datasets builder (json, csv, parquet) or hub name
    data_files: str | list[str] | None = None  # local files for a builder such as json
    config: str | None = None  # dataset configuration name (hub datasets)
    split: str | None = None  # dataset split (default: train for data.train, else validation)
    source_column: str = "source"  # column holding source text
    target_column: str = "target"  # column holding target text
    limit: int | None = None  # keep only the first N examples


@dataclass
class DataConfig:
    """Where the text comes from and how it becomes pieces."""

    train: Corpus
    valid: Corpus | None = None
    tokenizer: TokenizerSpec = field(default_factory=lambda: {"type": "sentencepiece"})
    joint_vocab: bool = True  # one tokenizer for both sides (needed for share_embeddings)
    max_length: int = 100  # training pairs with more pieces on either side are dropped
    cache_dir: str | None = None  # tokenized-corpus cache (Arrow, memory-mapped); None: in memory
    num_proc: int | None = None  # processes that tokenize into the cache (None: one per core)
    streaming: bool = False  # read and tokenize training data as it goes (corpora > disk or RAM)
    shuffle_buffer: int = 10_000  # streaming: pairs shuffled together before batching
    fit_pairs: int = 100_000  # streaming: the tokenizer is trained on the first N pairs


@dataclass
class ModelConfig:
    """The network: embeddings, encoder, attention, decoder."""

    embedding_dim: int = 256
    embedding_dropout: float = 0.2
    init_scale: float | None = 0.1  # every parameter uniform in ±s; None: ±1/√fan-in, zero bias
    encoder: EncoderSpec = field(default_factory=lambda: {"type": "gru"})
    attention: AttentionSpec | None = "bahdanau"
    decoder: DecoderSpec = field(default_factory=lambda: {"type": "luong"})
    tie_output: bool = False  # output projection shares the target embedding matrix
    share_embeddings: bool = False  # source and target embeddings are one matrix (joint vocab)
    copy: bool = False  # pointer-generator output: copy source pieces (needs joint_vocab)
    freeze: list[Literal["src_embed", "tgt_embed", "encoder", "decoder", "generator"]] = field(
        default_factory=list
    )  # parts whose parameters are not trained


@dataclass
class EarlyStopping:
    """Stop when the selection metric has not improved for `patience` validations."""

    patience: int = 5  # validations without improvement of train.validation.select


@dataclass
class TeacherForcing:
    """Scheduled sampling (Bengio et al., 2015): the gold-token ratio ε_i decays with step i.

    constant: ε = start; linear: ε = max(end, start − k·i); exponential: ε = max(end, start·kⁱ)
    (k < 1); inverse_sigmoid: ε = max(end, start · k / (k + exp(i / k))) (k ≥ 1).
    """

    schedule: Literal["constant", "linear", "exponential", "inverse_sigmoid"] = "constant"
    start: float = 1.0
    end: float = 0.0
    k: float = 1.0

    def ratio(self, step: int) -> float:
        """ε at update `step`."""
        if self.schedule == "constant":
            return self.start
        if self.schedule == "linear":
            value = self.start - self.k * step
        elif self.schedule == "exponential":
            value = self.start * self.k**step
        else:
            value = self.start * self.k / (self.k + math.exp(min(step / self.k, 700.0)))
        return max(self.end, value)


@dataclass
class CoverageLoss:
    """See et al. (2017): λ Σ_t Σ_s min(a_ts, c_ts) added to the loss from `start_step` on."""

    weight: float = 1.0
    start_step: int = 0


@dataclass
class Validation:
    """What each validation computes."""

    every: int = 500  # steps between validations (and checkpoints); 0: only at the end
    select: str = "loss"  # picks the best checkpoint: loss, ppl, or a metric in `metrics`
    subset: int | None = None  # decode only the first N validation sentences (None: all)
    search: SearchSpec = "greedy"  # search used to decode for the metrics
    batch_size: int = 64  # sentences per decoding batch


@dataclass
class TrainConfig:
    """The optimisation loop."""

    lr: float = 0.001
    batch_tokens: int = 2000  # target+source tokens budget per batch (max side × sentences)
    max_epochs: int = 10
    max_steps: int | None = None  # stop after this many updates, whatever the epoch
    max_minutes: float | None = None  # stop after this much training time (wall clock)
    optimizer: OptimizerSpec = "adam"
    scheduler: SchedulerSpec = "constant"
    clip_grad_norm: float | None = 1.0  # global gradient norm limit; None disables clipping
    label_smoothing: float = 0.0
    teacher_forcing: float | TeacherForcing = 1.0  # gold-token ratio, or a decay schedule
    coverage_loss: CoverageLoss | None = None  # needs attention with coverage
    validation: Validation = field(default_factory=Validation)
    early_stopping: EarlyStopping | None = None
    keep_checkpoints: int = 2  # step checkpoints kept besides the best one
    log_every: int = 50  # steps between progress lines
    max_nonfinite: int = 10  # stop after this many non-finite losses or gradients in a row
    threads: int | None = None  # torch CPU threads (None: torch's default)
    accumulate: int = 1  # batches per process summed into one update (global batch: × processes)
    # auto: bf16/fp16 autocast on GPU, else fp32; bf16-output: only the output layer's products;
    # bf16-products: those and the other products over whole sequences (README, Scaling up)
    precision: Literal["auto", "fp32", "bf16", "fp16", "bf16-output", "bf16-products"] = "auto"
    dist_timeout: float = 30.0  # minutes a process waits for the others before the job fails
    tensorboard: bool = False  # also log to RUN_DIR/tensorboard (needs seq2seq[tensorboard])


@dataclass
class Recipe:
    """A whole experiment."""

    data: DataConfig
    name: str = "run"
    seed: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchSpec = "greedy"  # used by `translate` and `evaluate`
    metrics: list[MetricSpec] = field(default_factory=lambda: ["bleu"])

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as it would be written in YAML."""
        return dataclasses.asdict(self)
