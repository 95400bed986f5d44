"""The one config tree: dataclasses with documented defaults, loaded from YAML, overridden by `key=value`.

    cfg = load_config("configs/smoke.yaml", ["data.chat_ratio=0.3", "train.max_steps=10"])

Each field's comment says what it does and what it costs. Every problem, from an unknown key to a value no library
accepts, is reported at once (`ConfigError`) before any work starts, naming the key and the fix
(kit.config.parse, kit.config.checks). `save_config` writes the resolved tree into a run folder without secrets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kit.errors import KitError
from kit.models.profiles import PROJECTIONS

SECRET_KEYS = {"tracking.api_key", "model.token"}


class ConfigError(KitError, ValueError):
    """A config that cannot be used; the message lists every problem, one per line."""


@dataclass
class ModelConfig:
    name: str = "tiny"  # "tiny" (random weights, built locally), "Qwen3-14B", a repo id, or a local folder
    source: str = "modelscope"  # modelscope | huggingface | local: where `name` is downloaded from
    cache_dir: str = ""  # "" = /root/autodl-tmp/qwen3-kit where it exists (AutoDL data disk), else ~/.cache/qwen3-kit
    revision: str = ""  # "" = the hub's default branch
    load_in_4bit: bool = True  # 4-bit base weights (QLoRA); False trains on 16-bit weights, ~4x the memory
    max_seq_length: int = 2048  # longer rows are dropped or truncated (data.overlong); memory grows with it
    adapter: str = ""  # continue training this LoRA adapter folder instead of starting a new one
    token: str = ""  # hub token for private repos; never written to disk


@dataclass
class SourceConfig:
    path: str = ""  # local file or glob (.jsonl/.json/.parquet), or a hub dataset id
    format: str = "openmath"  # openmath | sharegpt | messages | alpaca
    hub: str = "local"  # local | modelscope | huggingface
    split: str = "train"  # split (hub) or ignored (local)
    subset: str = ""  # the hub dataset's config name, if it has several
    revision: str = ""  # hub: a branch, tag or commit to pin; "" = the default branch as it is now
    role: str = "reasoning"  # reasoning | chat: which side of the mix its rows count on
    max_rows: int = 0  # 0 = all rows; else the first N rows that pass the filters
    problem_types: list[str] = field(default_factory=list)  # openmath: keep only these problem_type values
    min_pass_rate: float = 0.0  # openmath: drop rows below this pass_rate_72b_tir ("n/a" rows are kept)
    max_pass_rate: float = 1.0  # openmath: drop rows above it (e.g. 0.9 keeps the harder problems)
    max_chars: int = 0  # 0 = no bound; drop rows whose text is longer (cheap pre-filter before tokenizing)
    heldout: float = 0.0  # share of problems (by a hash of the first user turn) never trained on, kept for eval


@dataclass
class DataConfig:
    reasoning: SourceConfig = field(default_factory=lambda: SourceConfig(  # 1 % of its problems held out for eval
        path="nv-community/OpenMathReasoning", hub="modelscope", split="cot", format="openmath", role="reasoning",
        heldout=0.01))
    chat: SourceConfig = field(default_factory=lambda: SourceConfig(
        path="AI-ModelScope/FineTome-100k", hub="modelscope", split="train", format="sharegpt", role="chat"))
    extra: list[SourceConfig] = field(default_factory=list)  # your own data, each counted as reasoning or chat
    chat_ratio: float = 0.25  # share of chat in the mix: more keeps chat skills, less teaches more math
    ratio_by: str = "rows"  # rows (the reference recipe) | tokens: trained tokens, the share of the training signal
    max_rows: int = 0  # 0 = no cap on the mix's rows; the ratio is kept under the cap
    max_tokens: int = 0  # 0 = no cap on the mix's tokens
    seed: int = 3407  # same seed, same mix
    eval_rows: int = 32  # rows held out of the mix for eval loss (0 = no eval split)
    overlong: str = "drop"  # drop | truncate rows longer than model.max_seq_length
    train_turns: str = "final"  # final | all: which assistant turns of a multi-turn row are trained (docs/data.md)
    train_empty_think: bool = False  # train the empty <think></think> of chat rows? (docs/data.md says why not)
    on_bad_row: str = "error"  # error | skip (skipped rows are counted in the data report)
    allow_shortfall: bool = False  # too little chat for chat_ratio: false stops, saying so; true trains the smaller mix
    redraw_chat_each_epoch: bool = False  # a fresh chat subset each epoch, so more chat data is seen
    num_proc: int = 0  # 0 = all cores, for tokenizing
    cache_pools: bool = False  # keep sources tokenized for any ratio (the sweep sets it): all chat, more disk


@dataclass
class LoraConfig:
    r: int = 32  # rank: higher fits more, costs memory; 16-64 is typical
    alpha: int = 32  # scaling numerator; alpha == r keeps the update scale at 1
    dropout: float = 0.0  # 0 lets Unsloth use its fastest path
    target_modules: list[str] = field(default_factory=lambda: list(PROJECTIONS))  # all 7 projections (all-linear)
    use_rslora: bool = False  # rank-stabilised scaling alpha/sqrt(r), helps at high rank


@dataclass
class TrainConfig:
    backend: str = "auto"  # auto | unsloth | hf; auto = unsloth where a CUDA GPU is present
    output_dir: str = "runs"  # run folders go under here
    run_name: str = ""  # "" = a timestamped name
    max_steps: int = 30  # optimizer steps; 0 = train num_epochs epochs instead
    num_epochs: float = 1.0  # passes over the mix when max_steps is 0; fractions allowed
    per_device_train_batch_size: int = 2  # rows per forward pass; memory grows with it (the plan estimates it)
    gradient_accumulation_steps: int = 4  # effective batch = batch size x this
    learning_rate: float = 2e-4  # LoRA takes ~10x full fine-tuning's rate; lower it (2e-5) for long runs
    lr_scheduler_type: str = "linear"  # any of transformers' schedulers: linear, cosine, constant, ...
    warmup_steps: int = 5  # steps of rising learning rate at the start (a count, not a share)
    weight_decay: float = 0.01  # a light pull of the LoRA weights towards 0
    optim: str = "auto"  # auto = adamw_8bit on GPU (less memory), adamw_torch on CPU
    gradient_checkpointing: bool = True  # trades ~20% speed for a large cut in activation memory
    packing: bool = False  # pack rows into full sequences (no padding) - padding_free batching
    logging_steps: int = 1  # log the loss every N steps (metrics.jsonl, the progress bar, wandb)
    eval_steps: int = 0  # 0 = evaluate once per save
    save_steps: int = 50  # checkpoint every N steps
    save_total_limit: int = 3  # keep the newest K checkpoints
    resume: str = "auto"  # auto (newest checkpoint in the run folder) | never (start this run over) | a checkpoint
    allow_changes: bool = False  # resume even where model, LoRA or data settings differ from the run's config.yaml
    seed: int = 3407  # LoRA initialisation and batch order: same seed, same run


@dataclass
class TrackingConfig:
    wandb: str = "disabled"  # online | offline | disabled
    project: str = "qwen3-kit"  # the wandb project runs are logged to
    entity: str = ""  # "" = your default wandb user or team
    tags: list[str] = field(default_factory=list)  # wandb tags, to filter runs by
    api_key: str = ""  # prefer the WANDB_API_KEY variable; never printed or written
    group: str = ""  # wandb group: runs that belong together, e.g. the points of a sweep (it sets its name); "" = none


@dataclass
class ExportConfig:
    out_dir: str = ""  # "" = <run folder>/export
    formats: list[str] = field(default_factory=lambda: ["adapter", "merged_16bit"])  # + merged_4bit_forced (GPU)
    thinking_default: bool = True  # the mode the served template uses when a request does not set enable_thinking
    overwrite: bool = False  # replace an existing export (it is only swapped in once the new one is complete)


@dataclass
class EvalConfig:
    math: str = "heldout"  # heldout (data.reasoning's held-out problems) | math500 | gsm8k | aime24 | aime25 | a file
    n_math: int = 100  # problems scored; more is a tighter estimate and a longer run (each is generated twice)
    instructions: str = "data/eval/instructions.jsonl"  # prompts with verifiable instructions ("" = skip)
    n_instructions: int = 0  # 0 = all of them
    adapter: str = "final"  # final (<run>/adapter) | newest (its newest checkpoint, for an unfinished run) | a folder
    batch_size: int = 8  # prompts generated together (local) or requests in flight (endpoint): faster, more memory
    max_new_tokens: int = 1024  # reasoning traces need room; too short cuts the think block (counted as a failure)
    endpoint: str = ""  # an OpenAI-compatible URL serving the tuned model (vLLM: http://host:8000/v1); "" = local
    endpoint_model: str = ""  # the tuned model's name on the endpoint; "" = the one model it lists
    base_endpoint: str = ""  # the same for the base model; "" = generate the base locally
    base_endpoint_model: str = ""  # the base model's name on base_endpoint; "" = the one model it lists
    seed: int = 0  # sampling seed: the same seed and batch size give the same replies (local model)


@dataclass
class GrpoConfig:
    start_from: str = "sft"  # sft (the SFT run: train.output_dir/train.run_name) | base (a new LoRA, or model.adapter)
    run_name: str = ""  # "" = <train.run_name>-grpo, beside the SFT run
    max_steps: int = 100  # optimizer steps; Unsloth's Qwen3 recipe runs 100; rewards often move after 100-200
    num_generations: int = 8  # completions per problem, compared with each other: steadier with more, costs linearly
    prompts_per_step: int = 1  # problems per optimizer step; a step generates this x num_generations completions
    per_device_train_batch_size: int = 2  # completions per forward/backward pass (divides a step's); more memory
    max_prompt_length: int = 512  # problems longer than this in tokens (chat template included) are left out
    max_completion_length: int = 1536  # tokens generated per completion: the cost; a trace cut off here earns nothing
    temperature: float = 1.0  # a group needs different answers to compare; Qwen's 0.6 makes them alike
    min_p: float = 0.1  # drop tokens under 10% of the likeliest one's probability: T=1 stays coherent (Unsloth)
    learning_rate: float = 5.0e-6  # RL updates are noisy: ~40x below SFT's LoRA rate (Unsloth's Qwen3 GRPO recipe)
    warmup_steps: int = 10  # steps of rising learning rate (GRPO's own: train.warmup_steps is SFT's); a tenth of 100
    beta: float = 0.0  # KL penalty; 0 skips the reference pass. >0 pulls towards the base model, not the SFT adapter
    correct_weight: float = 1.0  # reward for a last \boxed{} equal to expected_answer (math-verify, as eval scores it)
    format_weight: float = 0.2  # reward for one closed think block, then an answer (thinking off: no think tags)
    length_weight: float = 0.0  # > 0 subtracts this x share of max_completion_length used: shorter, or giving up early
    thinking: bool = True  # generate with thinking on (the chat template's enable_thinking): the mode GRPO reinforces
    problem_types: list[str] = field(default_factory=lambda: ["has_answer_extracted"])  # openmath: answers not guessed
    skip_rows: int = 0  # source rows passed over first: data.reasoning.max_rows gives GRPO problems SFT did not read
    save_steps: int = 10  # checkpoint every N steps: GRPO steps are slow, and a preempted run loses at most these
    generation: str = "auto"  # auto (vLLM with unsloth where installed, else hf) | vllm | hf (transformers' generate)
    vllm_memory: float = 0.5  # vLLM's share of GPU memory (the weights it shares, its KV cache); lower it on OOM
    eval_before_after: bool = True  # score eval.* (held-out math, thinking switch, instructions) before and after


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Build the config from a YAML file (optional) plus `key=value` overrides, then validate it.

    Raises `ConfigError` listing every problem: unknown keys (with the nearest valid one), values of the wrong
    type, and values that cannot work (kit.config.checks).
    """
    from kit.config.checks import problems as invalid
    from kit.config.parse import build, set_overrides

    tree = read_yaml(Path(path)) if path is not None else {}
    problems = set_overrides(tree, overrides or [], Config)
    cfg = build(Config, tree, problems)
    if cfg.lora.target_modules == ["all-linear"]:  # peft's name for every linear layer but the head
        cfg.lora.target_modules = list(PROJECTIONS)
    problems += invalid(cfg)
    given = " and ".join(([str(path)] if path is not None else []) + (["the command line"] if overrides else []))
    if len(problems) == 1:
        raise ConfigError(f"{given or 'config'}: {problems[0]}")
    if problems:
        raise ConfigError(f"{given or 'config'}: {len(problems)} problems:\n- " + "\n- ".join(problems))
    return cfg


def read_yaml(path: Path) -> dict:
    """A config file's tree; a missing file, a syntax error (with its line and column) or a non-mapping, in one line."""
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist.")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file '{path}'{where}: {getattr(e, 'problem', None) or e}; "
                          "fix the YAML there.") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections (model:, data:, ...).")
    return tree


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret overrides (`tracking.api_key=...`, `model.token=...`) masked."""
    return [f"{arg.partition('=')[0]}=<redacted>" if arg.partition("=")[0].strip() in SECRET_KEYS else arg
            for arg in argv]


def to_dict(cfg: Config, *, redact: bool = True) -> dict:
    """The config as plain data; with `redact`, secrets (tokens, API keys) are left out entirely."""
    tree = dataclasses.asdict(cfg)
    if redact:
        for dotted in SECRET_KEYS:
            section, key = dotted.split(".")
            tree[section].pop(key, None)
    return tree


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config (without secrets) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def flatten(tree: dict, prefix: str = "") -> dict:
    """`{"train": {"max_steps": 5}}` -> `{"train.max_steps": 5}` (lists stay values)."""
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def changed(cfg: Config) -> dict:
    """The keys whose values differ from the defaults (`{"train.max_steps": 100, ...}`), secrets left out."""
    ours, defaults = flatten(to_dict(cfg)), flatten(to_dict(Config()))
    return {key: value for key, value in ours.items() if defaults.get(key) != value}
