"""Token data: corpus -> one long token stream -> fixed-length (x, y) chunks, batches chosen by step."""
import json
import os

import torch


def read_texts(path):
    """Texts of a corpus split: a .jsonl file ({"text": ...} per line) or a plain .txt file (one document)."""
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f if line.strip()]
    with open(path, encoding="utf-8") as f:
        return [f.read()]


def split_path(corpus, split):
    """corpus is a dir holding {split}.jsonl, or a file used for every split."""
    if os.path.isdir(corpus):
        return os.path.join(corpus, f"{split}.jsonl")
    return corpus


def tokenize_corpus(texts, tokenizer):
    """Concatenate <bos> doc <eos> for every doc; tokenizer is a `tokenizers.Tokenizer`. Returns (N,) int64."""
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    eos = tokenizer.token_to_id("<|end_of_text|>")
    ids = []
    for enc in tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.append(bos)
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


class TokenChunks:
    """Non-overlapping windows of a token stream: chunk i is x = s[i*S : i*S+S], y = s[i*S+1 : i*S+S+1]."""

    def __init__(self, tokens, seq_len):
        self.tokens = tokens
        self.seq_len = seq_len
        self.n = (len(tokens) - 1) // seq_len
        if self.n <= 0:
            raise ValueError(f"corpus of {len(tokens)} tokens is shorter than seq_len + 1 = {seq_len + 1}")
        self._perm_epoch = None
        self._perm = None

    def __len__(self):
        return self.n

    def get(self, indices):
        """Stack chunks: returns x, y of shape (len(indices), S)."""
        S = self.seq_len
        xs = [self.tokens[i * S: i * S + S] for i in indices]
        ys = [self.tokens[i * S + 1: i * S + S + 1] for i in indices]
        return torch.stack(xs), torch.stack(ys)

    def _perm_for(self, epoch, seed):
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(seed * 7919 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def train_batch(self, step, micro, batch_size, grad_accum=1, rank=0, world=1, seed=0):
        """The batch of (step, micro-step, rank): a pure function of its arguments (so resume is exact).

        Samples are drawn without replacement from a per-epoch shuffle of all chunks.
        """
        start = ((step * grad_accum + micro) * world + rank) * batch_size
        idx = []
        for k in range(start, start + batch_size):
            perm = self._perm_for(k // self.n, seed)
            idx.append(int(perm[k % self.n]))
        return self.get(idx)
