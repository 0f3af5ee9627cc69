"""The training loop: AdamW, warmup + cosine, clipping, bf16 autocast, checkpoint/resume, periodic export."""
import argparse
import json
import math
import os
import sys
import time

import torch

from . import checkpoint, distributed, schedules
from .data import TokenChunks, read_texts, split_path, tokenize_corpus
from .evaluate import evaluate_exits, format_table, write_json
from .model import LayerSkipLlama, RecipeConfig

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser():
    ap = argparse.ArgumentParser(description="LayerSkip training (layer dropout + early-exit loss) of a Llama.")
    g = ap.add_argument_group("model")
    g.add_argument("--from-pretrained", default=None, help="HF checkpoint dir (else a new model from the args)")
    g.add_argument("--layers", type=int, default=12)
    g.add_argument("--hidden", type=int, default=256)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--kv-heads", type=int, default=2)
    g.add_argument("--intermediate", type=int, default=688)
    g.add_argument("--rope-theta", type=float, default=10000.0)
    g.add_argument("--tie-embeddings", action="store_true")
    g = ap.add_argument_group("data")
    g.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"), help="dir with train/val.jsonl, or a .txt")
    g.add_argument("--tokenizer", default=os.path.join(HERE, "data", "tokenizer"), help="dir with tokenizer.json")
    g.add_argument("--seq-len", type=int, default=256)
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=1000, help="T: total optimiser steps")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per rank per micro-step")
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--min-lr-ratio", type=float, default=0.1)
    g.add_argument("--warmup", type=int, default=50)
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--clip", type=float, default=1.0)
    g.add_argument("--dtype", choices=["bf16", "f32"], default="f32", help="bf16 = autocast, master weights f32")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    g = ap.add_argument_group("LayerSkip recipe")
    g.add_argument("--p-max", type=float, default=0.1, help="layer-dropout rate at the last layer")
    g.add_argument("--dropout-shape", choices=schedules.DROPOUT_SHAPES, default="exponential")
    g.add_argument("--dropout-schedule", choices=["auto", "scratch", "constant"], default="auto",
                   help="S(t): scratch = exp(t ln2/(T-1))-1, constant = 1; auto = scratch unless --from-pretrained")
    g.add_argument("--exit-scale", choices=schedules.EXIT_SCALES, default="sum")
    g.add_argument("--e-scale", type=float, default=1.0)
    g.add_argument("--curriculum", choices=schedules.CURRICULA, default="rotational")
    g.add_argument("--rotation", type=int, default=2, help="R of the rotational curriculum")
    g = ap.add_argument_group("runs")
    g.add_argument("--out", default=os.path.join(HERE, "runs", "default"), help="run dir (checkpoint: state.pt)")
    g.add_argument("--export-dir", default=None, help="HF export dir (default: OUT/export)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/state.pt if it exists")
    g.add_argument("--ckpt-every", type=int, default=200)
    g.add_argument("--export-every", type=int, default=0, help="export every N steps (0: only by time/at end)")
    g.add_argument("--export-minutes", type=float, default=0.0, help="also export every M minutes")
    g.add_argument("--eval-batches", type=int, default=0, help="val batches per export eval (0: all, -1: none)")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--max-minutes", type=float, default=0.0, help="stop (save + export) after this wall time")
    g.add_argument("--stop-at", type=int, default=0, help="stop after this step (schedules still use --steps)")
    g.add_argument("--fit-steps", action="store_true",
                   help="size T (--steps: LR cosine and recipe schedules) to --max-minutes from the measured step "
                        "time after --probe-steps steps, measured again at half the time")
    g.add_argument("--probe-steps", type=int, default=30, help="steps timed by --fit-steps (first quarter skipped)")
    g.add_argument("--eval-at-start", action="store_true", help="evaluate every exit on the val split first")
    g.add_argument("--progress", choices=["plain", "tqdm"], default="plain")
    g.add_argument("--fsdp", action="store_true", help="shard with FSDP instead of DDP under torchrun")
    return ap


def lr_lambda_factory(warmup, total, min_ratio):
    """Linear warmup to 1 over `warmup` steps, then cosine from 1 down to min_ratio at `total`."""
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        prog = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * prog))
    return f


def build_model(args, vocab_size, bos_id, eos_id):
    from transformers import LlamaConfig, LlamaForCausalLM
    if args.from_pretrained:
        return LlamaForCausalLM.from_pretrained(args.from_pretrained, dtype=torch.float32)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, max_position_embeddings=max(args.seq_len, 2048),
                      rope_theta=args.rope_theta, tie_word_embeddings=args.tie_embeddings,
                      bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(cfg)


def make_optimizer(model, args):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def dropout_generator(seed, step, micro, rank):
    """Per-(step, micro, rank) generator: layer-dropout draws do not depend on history (exact resume)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 8_191 + micro * 131 + rank) % (2 ** 62))


class Trainer:
    """Owns model, optimizer, scheduler and data for one run; `run()` trains to the end (or the time limit)."""

    def __init__(self, args):
        from tokenizers import Tokenizer
        self.args = args
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        self.rank, self.world, _, self.device = distributed.init()
        if args.fsdp and self.world > 1 and self.device.type != "cuda":
            raise SystemExit("train.py: --fsdp needs CUDA devices (FSDP does not run on CPU); use DDP on CPU")
        self.tokenizer = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
        bos = self.tokenizer.token_to_id("<|begin_of_text|>")
        eos = self.tokenizer.token_to_id("<|end_of_text|>")
        t0 = time.time()
        self.train_chunks = TokenChunks(
            tokenize_corpus(read_texts(split_path(args.corpus, "train")), self.tokenizer), args.seq_len)
        val_path = split_path(args.corpus, "val")
        self.val_chunks = TokenChunks(tokenize_corpus(read_texts(val_path), self.tokenizer), args.seq_len) \
            if os.path.exists(val_path) else None
        self.log(f"tokenized {args.corpus}: train {len(self.train_chunks.tokens)} tokens, val "
                 f"{len(self.val_chunks.tokens) if self.val_chunks is not None else 0} tokens "
                 f"in {time.time() - t0:.1f} s")
        hf = build_model(args, self.tokenizer.get_vocab_size(), bos, eos).to(self.device)
        scratch = {"auto": not args.from_pretrained, "scratch": True, "constant": False}[args.dropout_schedule]
        recipe = RecipeConfig(p_max=args.p_max, dropout_shape=args.dropout_shape, from_scratch=scratch,
                              total_steps=args.steps, exit_scale=args.exit_scale, e_scale=args.e_scale,
                              curriculum=args.curriculum, rotation=args.rotation)
        self.wrapper = LayerSkipLlama(hf, recipe)
        self.step = 0
        self.state_path = os.path.join(args.out, "state.pt")
        self.export_dir = args.export_dir or os.path.join(args.out, "export")
        resume_state = None
        if args.resume and os.path.exists(self.state_path):
            resume_state = checkpoint.load_state(self.state_path)
            if not args.fsdp:
                self.wrapper.hf.load_state_dict(resume_state["model"])
        self.model = distributed.wrap(self.wrapper, self.world, self.device, args.fsdp)
        self.optimizer = make_optimizer(self.model, args)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda_factory(args.warmup, args.steps, args.min_lr_ratio))
        if resume_state is not None:
            self._load(resume_state)
            self.log(f"resumed from {self.state_path} at step {self.step}")
        self.autocast = torch.bfloat16 if args.dtype == "bf16" else None

    # ---- state --------------------------------------------------------------------------------------
    def _full_states(self):
        """(model state of the HF model, optimizer state), full (unsharded) on every rank that gets them."""
        if self.args.fsdp and self.world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
            msd, osd = get_state_dict(self.model, self.optimizer,
                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            msd = {k[len("hf."):]: v for k, v in msd.items() if k.startswith("hf.")}
            return msd, osd
        return self.wrapper.hf.state_dict(), self.optimizer.state_dict()

    def _load(self, st):
        if self.args.fsdp and self.world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict
            msd = {"hf." + k: v for k, v in st["model"].items()}
            set_state_dict(self.model, self.optimizer, model_state_dict=msd, optim_state_dict=st["optimizer"],
                           options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.step = st["step"]
        checkpoint.set_rng_state(st["rng"])

    def save(self):
        msd, osd = self._full_states()
        if self.rank == 0:
            checkpoint.save_state(self.state_path, msd, osd, self.scheduler.state_dict(), self.step,
                                  vars(self.args))
        self.barrier()

    def export(self):
        """Export the HF dir, evaluate every exit on the val split, write eval.json beside it."""
        msd = self._full_states()[0] if (self.args.fsdp and self.world > 1) else None
        rows = self.evaluate()
        if self.rank == 0:
            extra = {"layerskip_training.json": json.dumps(
                {"step": self.step, "args": vars(self.args)}, indent=2, default=str)}
            if rows is not None:
                extra["eval.json"] = json.dumps({"step": self.step, "exits": rows}, indent=2)
            checkpoint.export_hf(self.wrapper.hf, self.args.tokenizer, self.export_dir, msd, extra)
            self.log(f"exported step {self.step} -> {self.export_dir}")
            if rows is not None:
                self.log(format_table(rows))
        self.barrier()
        return rows

    def evaluate(self):
        if self.val_chunks is None or self.args.eval_batches < 0:
            return None
        mb = self.args.eval_batches or None
        # through the (possibly DDP/FSDP-wrapped) model's forward; ranks may hold different batches
        return evaluate_exits(self.model, self.val_chunks, self.args.batch_size, self.device, mb, self.autocast,
                              self.rank, self.world)

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()

    def log(self, msg):
        if self.rank == 0:
            print(msg, flush=True)

    # ---- schedule sized to the time budget (--fit-steps) ----------------------------------------------
    def set_total_steps(self, total):
        """Change T: the cosine LR schedule and the recipe's schedules (continuous for the steps done)."""
        a = self.args
        a.steps = total
        self.wrapper.recipe.total_steps = total
        f = lr_lambda_factory(a.warmup, total, a.min_lr_ratio)
        self.scheduler.lr_lambdas = [f] * len(self.optimizer.param_groups)

    def fit_total_steps(self, steps_done, seconds, elapsed):
        """T = this step + the steps that fit in the rest of --max-minutes at steps_done / seconds (97%)."""
        a = self.args
        rate = steps_done / max(seconds, 1e-9)
        left = a.max_minutes * 60 - elapsed
        total = max(self.step + 1, self.step + int(0.97 * left * rate))
        self.set_total_steps(total)
        if total < 2 * a.warmup:
            self.log(f"warning: T={total} < 2 x warmup {a.warmup}")
        self.log(f"fit-steps: {rate:.2f} steps/s, {left:.0f} s left at step {self.step} -> T = {total}")
        return total

    # ---- loop ---------------------------------------------------------------------------------------
    def train_step(self):
        """One optimiser step (with grad accumulation); returns (loss, {layer: CE}, tokens)."""
        a = self.args
        self.model.train()
        total, exits, tokens = 0.0, {}, 0
        for micro in range(a.grad_accum):
            x, y = self.train_chunks.train_batch(self.step, micro, a.batch_size, a.grad_accum, self.rank,
                                                 self.world, a.seed)
            x, y = x.to(self.device), y.to(self.device)
            gen = dropout_generator(a.seed, self.step, micro, self.rank)
            sync_ctx = self.model.no_sync() if (self.world > 1 and micro < a.grad_accum - 1) else _null()
            with sync_ctx:
                with torch.autocast(device_type=self.device.type, dtype=self.autocast or torch.float32,
                                    enabled=self.autocast is not None):
                    out = self.model(x, y, step=self.step, generator=gen)
                (out["loss"] / a.grad_accum).backward()
            total += out["loss"].item() / a.grad_accum
            for l, v in out["exit_losses"].items():
                exits[l] = exits.get(l, 0.0) + v.item() / a.grad_accum
            tokens += x.numel()
        if self.world > 1:  # log the mean over ranks (the exit set is the same on every rank)
            keys = sorted(exits)
            t = torch.tensor([total] + [exits[k] for k in keys], dtype=torch.float64, device=self.device)
            distributed.all_reduce_mean(t, self.world)
            total, exits = t[0].item(), {k: t[i + 1].item() for i, k in enumerate(keys)}
        if a.clip > 0:
            if hasattr(self.model, "clip_grad_norm_"):
                self.model.clip_grad_norm_(a.clip)
            else:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total, exits, tokens * self.world

    def run(self):
        a = self.args
        t_start = time.time()
        t_export = time.time()
        t_log, tok_log = time.time(), 0
        loss_acc, n_acc, exit_acc = 0.0, 0, {}
        bar = None
        last = a.steps if a.stop_at <= 0 else min(a.steps, a.stop_at)
        fit = a.fit_steps and a.max_minutes > 0
        if a.fit_steps and not fit:
            self.log("--fit-steps needs --max-minutes; T stays --steps")
        step0 = self.step
        probe_skip, probe_end = step0 + max(1, a.probe_steps // 4), step0 + max(2, a.probe_steps)
        t_probe, refit_done, tok_total = None, False, 0
        if a.eval_at_start:
            rows = self.evaluate()
            if rows is not None:
                self.log(f"val at step {self.step} (before training):")
                self.log(format_table(rows))
            t_start = t_export = t_log = time.time()
        if a.progress == "tqdm" and self.rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=last, initial=self.step)
        self.log(f"training {self.step} -> {last} of T={a.steps}; world {self.world}; "
                 f"{sum(p.numel() for p in self.wrapper.parameters()) / 1e6:.2f}M params; "
                 f"{len(self.train_chunks)} train chunks of {a.seq_len}")
        while self.step < last:
            loss, exits, tokens = self.train_step()
            tok_total += tokens
            if fit:  # time steps probe_skip..probe_end, fit T; again at half the budget over the steps since
                refit = False
                if self.step == probe_skip:
                    t_probe = (self.step, time.time())
                elif self.step == probe_end and t_probe is not None:
                    refit = True
                elif not refit_done and t_probe is not None and self.step > probe_end and \
                        self._shared_time(time.time() - t_start) >= a.max_minutes * 30:
                    refit = refit_done = True
                if refit:  # every rank uses rank 0's times, so all fit the same T
                    now = time.time()
                    total = self.fit_total_steps(self.step - t_probe[0], self._shared_time(now - t_probe[1]),
                                                 self._shared_time(now - t_start))
                    last = total if a.stop_at <= 0 else min(total, a.stop_at)
                    t_probe = (self.step, now)
            loss_acc += loss
            n_acc += 1
            tok_log += tokens
            for l, v in exits.items():
                s, n = exit_acc.get(l, (0.0, 0))
                exit_acc[l] = (s + v, n + 1)
            if self.step % a.log_every == 0 or self.step == last:
                dt = time.time() - t_log
                ex = " ".join(f"L{l + 1}:{s / n:.3f}" for l, (s, n) in sorted(exit_acc.items()))
                line = (f"step {self.step}/{a.steps} loss {loss_acc / n_acc:.4f} | exits {ex} | "
                        f"lr {self.scheduler.get_last_lr()[0]:.2e} | {tok_log / max(dt, 1e-9):.0f} tok/s | "
                        f"{(time.time() - t_start) / 60:.1f} min")
                if bar is not None:
                    bar.update(self.step - bar.n)
                    bar.set_postfix_str(line)
                else:
                    self.log(line)
                t_log, tok_log, loss_acc, n_acc, exit_acc = time.time(), 0, 0.0, 0, {}
            out_of_time = a.max_minutes > 0 and (time.time() - t_start) / 60 >= a.max_minutes
            if self.step % a.ckpt_every == 0 or self.step == last or out_of_time:
                self.save()
            if (a.export_every and self.step % a.export_every == 0) or \
               (a.export_minutes and (time.time() - t_export) / 60 >= a.export_minutes):
                self.export()
                t_export = time.time()
            if out_of_time:
                self.log(f"time limit of {a.max_minutes} min reached at step {self.step}")
                break
        elapsed = time.time() - t_start
        self.log(f"trained steps {step0} -> {self.step} of T={a.steps}: {tok_total} tokens in {elapsed / 60:.2f} min "
                 f"({tok_total / max(elapsed, 1e-9):.0f} tokens/s)")
        self.export()
        if bar is not None:
            bar.close()

    def _shared_time(self, seconds):
        """rank 0's value on every rank (so every rank fits the same T)."""
        if self.world <= 1:
            return seconds
        t = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, 0)
        return t.item()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main(argv=None):
    args = build_parser().parse_args(argv)
    trainer = Trainer(args)
    try:
        trainer.run()
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
