"""The config tree: one dataclass per section, each field documented (and its `range` given) in its metadata.

Names follow the libraries the values go to (TRL's SFTConfig/GRPOConfig, peft's LoraConfig); `qwen3-kit config`
prints the metadata and kit.config.checks enforces it, so documentation and checks never drift apart.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kit.errors import KitError
from kit.models.profiles import PROJECTIONS

SECRET_KEYS = {"tracking.api_key", "model.token"}


class ConfigError(KitError, ValueError):
    """A config that cannot be used; the message lists every problem, one per line."""


def knob(default: Any, help: str, **checks: Any) -> Any:
    """A config field: its default, what it does and costs (`help`), and optional `range=(low, high)` bounds
    (either may be None), inclusive unless `above=True` makes the lower one exclusive, `open=True` the upper one."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


@dataclass
class ModelConfig:
    name: str = knob("tiny", "tiny (a toy-world Qwen3 built locally), a Qwen3 name (Qwen3-14B; `qwen3-kit download` "
                             "lists them), a repo id, or a local folder")
    source: Literal["modelscope", "huggingface", "local"] = knob("modelscope", "where `name` is downloaded from")
    cache_dir: str = knob("", "\"\" = /root/autodl-tmp/qwen3-kit where it exists (AutoDL data disk), else "
                              "~/.cache/qwen3-kit")
    revision: str = knob("", "a branch, tag or commit of the model repo; \"\" = its default branch")
    load_in_4bit: bool = knob(True, "4-bit base weights (QLoRA); false trains on 16-bit weights, ~4x the memory")
    max_seq_length: int = knob(2048, "longer rows are dropped or truncated (data.overlong); memory grows with it",
                               range=(16, None))
    adapter: str = knob("", "continue training this LoRA adapter folder instead of starting a new one")
    token: str = knob("", "hub token for private repos; never written to disk")


@dataclass
class SourceConfig:
    path: str = knob("", "a local file, folder or glob (.jsonl/.json/.parquet), or a hub data set id; \"\" = none")
    format: Literal["auto", "openmath", "sharegpt", "messages", "alpaca"] = knob(
        "auto", "the rows' schema; auto reads it off the first row (docs/data.md shows each)")
    hub: Literal["auto", "local", "modelscope", "huggingface"] = knob(
        "auto", "where `path` lives; auto: ModelScope for an owner/name id that names no file here, else here")
    split: str = knob("train", "the hub data set's split (local files: ignored)")
    subset: str = knob("", "the hub data set's config name, if it has several")
    revision: str = knob("", "hub: a branch, tag or commit to pin; \"\" = the default branch as it is now")
    role: Literal["auto", "reasoning", "chat"] = knob(
        "auto", "reasoning: replies carry <think> traces; chat: plain replies (Qwen3's template gives them an empty "
                "think block); auto: read off the first row")
    share: float | None = knob(None, "this source's share of the mix (by data.ratio_by); null = all of its rows",
                               range=(0, 1), above=True, open=True)
    max_rows: int = knob(0, "0 = all rows; else the first N rows that pass the filters", range=(0, None))
    problem_types: list[str] = knob([], "openmath: keep only these problem_type values")
    min_pass_rate: float = knob(0.0, "openmath: drop rows below this pass_rate_72b_tir (\"n/a\" rows are kept)",
                                range=(0, 1))
    max_pass_rate: float = knob(1.0, "openmath: drop rows above it (e.g. 0.9 keeps the harder problems)",
                                range=(0, 1))
    max_chars: int = knob(0, "0 = no bound; drop rows whose text is longer (cheap, before tokenizing)",
                          range=(0, None))
    heldout: float = knob(0.0, "share of problems (by a hash of the first user turn) never trained on, kept for eval",
                          range=(0, 1), open=True)

    @property
    def where(self) -> str:
        """The hub `path` is read from, auto resolved: ModelScope for an `owner/name` id naming no file here."""
        from kit.paths import local_matches

        if self.hub != "auto":
            return self.hub
        hub_id = re.fullmatch(r"[\w-]+/[\w.-]+", self.path) and not self.path.endswith((".jsonl", ".json", ".parquet"))
        return "modelscope" if hub_id and not local_matches(self.path) else "local"


def _openmath() -> SourceConfig:
    return SourceConfig(path="nv-community/OpenMathReasoning", split="cot", role="reasoning", heldout=0.01)


def _finetome() -> SourceConfig:
    return SourceConfig(path="AI-ModelScope/FineTome-100k", role="chat")


@dataclass
class DataConfig:
    reasoning: SourceConfig = field(default_factory=_openmath, metadata={
        "help": "the recipe's math: all of its rows are trained; 1 % of its problems held out for eval"})
    chat: SourceConfig = field(default_factory=_finetome, metadata={
        "help": "the recipe's chat: drawn to be data.chat_ratio of the mix"})
    chat_ratio: float = knob(0.25, "share of chat in the mix: more keeps chat skills, less teaches more math",
                             range=(0, 1))
    sources: list[SourceConfig] = knob([], "more sources, your own data among them (docs/data.md): each with a "
                                           "share of the mix, or all of its rows")
    ratio_by: Literal["rows", "tokens"] = knob("rows", "what shares count: rows (the reference recipe) or trained "
                                                       "tokens (the share of the training signal)")
    max_rows: int = knob(0, "0 = no cap on the mix's rows; the shares are kept under the cap", range=(0, None))
    max_tokens: int = knob(0, "0 = no cap on the mix's tokens", range=(0, None))
    seed: int = knob(3407, "same seed, same mix")
    eval_rows: int = knob(32, "rows held out for the eval loss, from each source as it is in the mix (0 = none)",
                          range=(0, None))
    overlong: Literal["drop", "truncate"] = knob("drop", "rows longer than model.max_seq_length")
    train_turns: Literal["final", "all"] = knob("final", "which assistant turns of a multi-turn row are trained "
                                                         "(docs/data.md)")
    train_empty_think: bool = knob(False, "train the empty <think></think> of chat rows? (docs/data.md says why not)")
    on_bad_row: Literal["error", "skip"] = knob("error", "a row that cannot be used: stop naming it, or skip and "
                                                         "count it in the data report")
    allow_shortfall: bool = knob(False, "a source too short for its share: false stops, saying so; true trains the "
                                        "smaller mix")
    redraw_each_epoch: bool = knob(False, "a fresh draw of each shared source (the chat) each epoch: more of it "
                                          "is seen")
    num_proc: int = knob(0, "processes rendering and tokenizing a large source; 0 = every core; up to 2, one "
                            "process, its tokenizer on every core", range=(0, None))
    cache_pools: bool = knob(False, "keep sources tokenized for any share (the sweep sets it): all rows, more disk")


@dataclass
class LoraConfig:  # peft's LoraConfig names
    r: int = knob(32, "rank: higher fits more, costs memory; 16-64 is typical", range=(1, None))
    lora_alpha: int = knob(32, "scaling numerator; lora_alpha == r keeps the update scale at 1", range=(1, None))
    lora_dropout: float = knob(0.0, "0 lets Unsloth use its fastest path", range=(0, 1), open=True)
    target_modules: list[str] = knob(list(PROJECTIONS), "all 7 projections (also: all-linear), or a subset")
    use_rslora: bool = knob(False, "rank-stabilised scaling lora_alpha/sqrt(r): helps at high rank")


@dataclass
class TrainConfig:  # TRL's SFTConfig / transformers' TrainingArguments names
    backend: Literal["auto", "unsloth", "hf"] = knob("auto", "auto = unsloth where a CUDA GPU is present, else hf "
                                                             "(transformers + peft)")
    output_dir: str = knob("runs", "run folders go under here")
    run_name: str = knob("", "the run's folder under output_dir; \"\" = a timestamped name")
    max_steps: int = knob(30, "optimizer steps; 0 = train num_train_epochs epochs instead", range=(0, None))
    num_train_epochs: float = knob(1.0, "passes over the mix when max_steps is 0; fractions allowed",
                                   range=(0, None))
    per_device_train_batch_size: int = knob(2, "rows per forward pass; memory grows with it (the plan estimates it)",
                                            range=(1, None))
    gradient_accumulation_steps: int = knob(4, "effective batch = batch size x this", range=(1, None))
    learning_rate: float = knob(2e-4, "LoRA takes ~10x full fine-tuning's rate; lower it (2e-5) for long runs",
                                range=(0, None), above=True)
    lr_scheduler_type: str = knob("linear", "any of transformers' schedulers: linear, cosine, constant, ...")
    warmup_steps: int = knob(5, "steps of rising learning rate at the start (a count, not a share)", range=(0, None))
    weight_decay: float = knob(0.01, "a light pull of the LoRA weights towards 0", range=(0, None))
    optim: str = knob("auto", "auto = adamw_8bit on a GPU (less memory), adamw_torch on a CPU; or any of "
                              "transformers' optimizers")
    gradient_checkpointing: bool = knob(True, "trades ~20% speed for a large cut in activation memory")
    packing: bool = knob(False, "pack rows into full sequences, padding-free (rows never attend to each other)")
    logging_steps: int = knob(1, "log the loss every N steps (metrics.jsonl, the progress bar, wandb)",
                              range=(1, None))
    eval_steps: int = knob(0, "evaluate every N steps; 0 = at every save", range=(0, None))
    switch_tokens: int = knob(256, "at each evaluation 4 short prompts are generated, thinking on and off, up to this "
                                   "many new tokens each, and the thinking switch scored; 0 = no check",
                              range=(0, None))
    switch_drop: float = knob(0.2, "a thinking-switch score this far below its step-0 (base model) value warns while "
                                   "training and stops the export", range=(0, 1))
    save_steps: int = knob(50, "checkpoint every N steps", range=(1, None))
    save_total_limit: int = knob(3, "keep the newest K checkpoints", range=(1, None))
    resume: str = knob("auto", "auto (the run's newest checkpoint) | never (start the run over) | a checkpoint folder")
    allow_changes: bool = knob(False, "resume even where model, LoRA or data settings differ from the run's "
                                      "config.yaml")
    seed: int = knob(3407, "LoRA initialisation and batch order: same seed, same run")
    trl: dict = knob({}, "any other field of TRL's SFTConfig, given as train.<field>=<value> (checked against "
                         "TRL's own dataclass)")


@dataclass
class TrackingConfig:
    wandb: Literal["online", "offline", "disabled"] = knob("disabled", "offline runs sync later with `wandb sync`")
    project: str = knob("qwen3-kit", "the wandb project runs are logged to")
    entity: str = knob("", "\"\" = your default wandb user or team")
    tags: list[str] = knob([], "wandb tags, to filter runs by")
    api_key: str = knob("", "prefer the WANDB_API_KEY variable; never printed or written")
    group: str = knob("", "runs that belong together, e.g. the points of a sweep (it sets its name); \"\" = none")


@dataclass
class ExportConfig:
    out_dir: str = knob("", "\"\" = <run folder>/export")
    formats: list[Literal["adapter", "merged_16bit", "merged_4bit_forced"]] = knob(
        ["adapter", "merged_16bit"], "merged_4bit_forced is Unsloth's, on a GPU; GGUF: README")
    thinking_default: bool = knob(True, "the mode the served template uses when a request does not set "
                                        "enable_thinking")
    overwrite: bool = knob(False, "replace an existing export (swapped in only once the new one is complete)")
    allow_broken_switch: bool = knob(False, "export even a run whose thinking switch broke while training "
                                            "(train.switch_drop)")


@dataclass
class EvalConfig:
    math: str = knob("heldout", "heldout (data.reasoning's held-out problems) | math500 | gsm8k | aime24 | aime25 "
                                "| a file")
    n_math: int = knob(100, "problems scored; more is a tighter estimate and a longer run (each is generated twice)",
                       range=(0, None))
    instructions: str = knob("data/eval/instructions.jsonl", "prompts with verifiable instructions (\"\" = skip)")
    n_instructions: int = knob(0, "0 = all of them", range=(0, None))
    adapter: str = knob("final", "final (<run>/adapter) | newest (its newest checkpoint, for an unfinished run) | "
                                 "a folder")
    batch_size: int = knob(8, "prompts generated together (local) or requests in flight (endpoint)",
                           range=(1, None))
    max_new_tokens: int = knob(1024, "reasoning traces need room; one cut short counts as a failure",
                               range=(1, None))
    endpoint: str = knob("", "an OpenAI-compatible URL serving the tuned model (vLLM: http://host:8000/v1); "
                             "\"\" = local")
    endpoint_model: str = knob("", "the tuned model's name on the endpoint; \"\" = the one model it lists")
    base_endpoint: str = knob("", "the same for the base model; \"\" = generate the base locally")
    base_endpoint_model: str = knob("", "the base model's name on base_endpoint; \"\" = the one model it lists")
    request_timeout: float = knob(600.0, "seconds to wait for one endpoint reply: long traces at a busy server need "
                                         "minutes; a hung server is given up on after this", range=(1, None))
    seed: int = knob(0, "sampling seed: the same seed and batch size give the same replies (local model)")


@dataclass
class GrpoConfig:  # TRL's GRPOConfig names, where it has them
    start_from: Literal["sft", "base"] = knob("sft", "sft: the SFT run's adapter (train.output_dir/run_name); "
                                                     "base: a new LoRA, or model.adapter")
    run_name: str = knob("", "\"\" = <train.run_name>-grpo, beside the SFT run")
    max_steps: int = knob(100, "optimizer steps; rewards often move after 100-200", range=(1, None))
    num_generations: int = knob(8, "completions per problem, compared with each other: steadier with more, costs "
                                   "linearly", range=(2, None))
    prompts_per_step: int = knob(1, "problems per optimizer step: a step generates this x num_generations "
                                    "completions", range=(1, None))
    per_device_train_batch_size: int = knob(2, "completions per forward/backward pass (divides a step's)",
                                            range=(1, None))
    max_prompt_length: int = knob(512, "problems longer than this in tokens (chat template included) are left out",
                                  range=(1, None))
    max_completion_length: int = knob(1536, "tokens generated per completion: the cost; a trace cut off earns "
                                            "nothing", range=(1, None))
    temperature: float = knob(1.0, "a group needs different answers to compare; Qwen's 0.6 makes them alike",
                              range=(0, None), above=True)
    min_p: float = knob(0.1, "drop tokens under this share of the likeliest one's probability (Unsloth's recipe)",
                        range=(0, 1), open=True)
    learning_rate: float = knob(5.0e-6, "RL updates are noisy: ~40x below SFT's LoRA rate", range=(0, None),
                                above=True)
    warmup_steps: int = knob(10, "GRPO's own warmup (train.warmup_steps is SFT's)", range=(0, None))
    beta: float = knob(0.0, "KL penalty; 0 skips the reference pass; >0 pulls towards the base, not the SFT adapter",
                       range=(0, None))
    correct_weight: float = knob(1.0, "reward for a last \\boxed{} equal to expected_answer (as eval scores it)",
                                 range=(0, None))
    format_weight: float = knob(0.2, "reward for one closed think block, then an answer", range=(0, None))
    length_weight: float = knob(0.0, "> 0 subtracts this x the share of max_completion_length used",
                                range=(0, None))
    thinking: bool = knob(True, "generate with thinking on (enable_thinking): the mode GRPO reinforces")
    problem_types: list[str] = knob(["has_answer_extracted"], "openmath: answers found, not guessed by a model")
    skip_rows: int = knob(0, "source rows passed over first, e.g. past those SFT read (data.reasoning.max_rows)",
                          range=(0, None))
    save_steps: int = knob(10, "checkpoint every N steps: GRPO steps are slow", range=(1, None))
    generation: Literal["auto", "vllm", "hf"] = knob("auto", "auto = vLLM through Unsloth where installed, else "
                                                             "transformers' generate")
    vllm_memory: float = knob(0.5, "vLLM's share of GPU memory; lower it on out-of-memory", range=(0, 1), open=True)
    eval_before_after: bool = knob(True, "score eval.* (math, the thinking switch, instructions) before and after")
    trl: dict = knob({}, "any other field of TRL's GRPOConfig, given as grpo.<field>=<value>")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    grpo: GrpoConfig = field(default_factory=GrpoConfig)


def to_dict(cfg: Config, *, redact: bool = True) -> dict:
    """The config as plain data; with `redact`, secrets (tokens, API keys) are left out entirely."""
    tree = dataclasses.asdict(cfg)
    for dotted in SECRET_KEYS if redact else ():
        section, key = dotted.split(".")
        tree[section].pop(key, None)
    return tree


def flatten(tree: dict, prefix: str = "") -> dict:
    """`{"train": {"max_steps": 5}}` -> `{"train.max_steps": 5}` (lists stay values)."""
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else
                   {f"{prefix}{key}": value})
    return out


def changed(cfg: Config) -> dict:
    """The keys whose values differ from the defaults (`{"train.max_steps": 100, ...}`), secrets left out."""
    ours, defaults = flatten(to_dict(cfg)), flatten(to_dict(Config()))
    return {key: value for key, value in ours.items() if defaults.get(key) != value}


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config (without secrets) as YAML."""
    import yaml

    from kit.files import write_atomic

    write_atomic(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
    return Path(path)
