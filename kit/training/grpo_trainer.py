"""The GRPOTrainer the kit reinforces with: TRL's, or on a GPU Unsloth's patched one, and the callbacks every run has.

    trainer = build_grpo_trainer(cfg, model, tokenizer, prompts.train, run_folder)

Built after `kit.training.backends.activate_backend`, so on a GPU `trl.GRPOTrainer` and `trl.GRPOConfig` are Unsloth's
classes: a model loaded with a vLLM engine (kit.training.backends.load_for_training(vllm=True)) then generates through
it, otherwise through transformers' generate. Prompts go through the tokenizer's own chat template with
`enable_thinking` set by grpo.thinking (GRPOConfig.chat_template_kwargs), as at inference.
"""

from __future__ import annotations

from pathlib import Path

from kit.config import Config
from kit.training.trainer import progress_display, run_arguments, time_left, whole_run_train_loss


def grpo_config(cfg: Config, out: Path, reward_weights: list[float]):
    """The `GRPOConfig` of a run: the one mapping from the kit's `grpo` keys to TRL's (the rest as for SFT)."""
    from trl import GRPOConfig

    g = cfg.grpo
    completions = g.prompts_per_step * g.num_generations
    return GRPOConfig(
        **run_arguments(cfg, out, g.save_steps, g.warmup_steps),
        max_steps=g.max_steps, learning_rate=g.learning_rate,
        per_device_train_batch_size=g.per_device_train_batch_size,
        gradient_accumulation_steps=completions // g.per_device_train_batch_size,  # one generation round per step
        num_generations=g.num_generations, max_completion_length=g.max_completion_length,
        temperature=g.temperature, min_p=g.min_p or None, beta=g.beta,
        chat_template_kwargs={"enable_thinking": g.thinking}, reward_weights=reward_weights,
    )


def _trainer_class():
    import torch
    from trl import GRPOTrainer
    from trl.trainer.utils import selective_log_softmax_and_entropy

    class KitGRPOTrainer(GRPOTrainer):
        """GRPOTrainer; on CPU the completions' log-probabilities come from the model's own logits, since TRL's
        fused LM head is a Triton (GPU-only) kernel in TRL 1.15. They are the same numbers."""

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, *args, **kwargs):
            # Whatever else the caller passes goes on as it came: Unsloth's compute_loss adds a seventh positional
            # argument (compute_efficient), TRL's callers more keywords.
            if not self.args.use_cpu:
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, *args, **kwargs)
            size = batch_size or input_ids.size(0)
            parts = []
            for start in range(0, input_ids.size(0), size):
                ids, mask = input_ids[start:start + size], attention_mask[start:start + size]
                logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=logits_to_keep + 1).logits
                parts.append(selective_log_softmax_and_entropy(logits[:, :-1] / self.temperature,
                                                               ids[:, -logits_to_keep:]))
            logps, entropies = (torch.cat(x) for x in zip(*parts, strict=True))
            return logps, entropies if compute_entropy else None, None

        rollout_check = None  # fn(prompt_ids, completion_ids) -> kit.training.guards.rollout_gap, once
        checked = False

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            """TRL's; the first rollouts after an update are checked against the base (logged: guard/rollout_gap)."""
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            if self.rollout_check and self.state.global_step >= 1 and not self.checked:
                from tqdm.auto import tqdm

                from kit.training.guards import rollouts_with_adapter

                self.checked, gap = True, self.rollout_check(prompt_ids, completion_ids)
                self._metrics["train"]["guard/rollout_gap"].append(gap)
                if warning := rollouts_with_adapter(gap, self.state.global_step):
                    tqdm.write(f"warning: {warning}")
            return completion_ids, logprobs

        def log(self, logs, start_time=None):
            whole_run_train_loss(self.state, logs)
            super().log(logs, start_time)

    return KitGRPOTrainer


def build_grpo_trainer(cfg: Config, model, tokenizer, prompts, out: Path, *, progress: bool = True,
                       callbacks: list | None = None, rollout_check=None):
    """The GRPOTrainer on `prompts` (prompt, expected_answer) with the rewards grpo.* weighs (kit.training.rewards);
    `rollout_check(prompt_ids, completion_ids)` gives kit.training.guards.rollout_gap of the first rollouts after an
    update."""
    from transformers import PrinterCallback

    from kit.training.rewards import reward_functions

    rewards, weights = reward_functions(cfg.grpo, tokenizer)
    trainer = _trainer_class()(model=model, args=grpo_config(cfg, out, weights), processing_class=tokenizer,
                               reward_funcs=rewards, train_dataset=prompts,
                               callbacks=[*progress_display(progress), time_left(), *(callbacks or [])])
    trainer.remove_callback(PrinterCallback)  # its dict dumps, in place of the display
    trainer.rollout_check = rollout_check
    return trainer
