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


def tokenize_corpus(texts, tokenizer, batch_docs=2048):
    """Concatenate <bos> doc <eos> for every doc; tokenizer is a `tokenizers.Tokenizer`. Returns (N,) int64.

    Encodes batch_docs documents at a time (threaded by `tokenizers`, RAYON_NUM_THREADS caps the threads;
    `encode_batch_fast` skips the offsets when available) and concatenates with numpy, so a corpus of
    hundreds of MB is not held as Encoding objects or Python ints.
    """
    import numpy as np
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    eos = tokenizer.token_to_id("<|end_of_text|>")
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    sep_b, sep_e = np.array([bos], dtype=np.int64), np.array([eos], dtype=np.int64)
    parts = []
    texts = list(texts)
    for i in range(0, len(texts), batch_docs):
        for enc in encode(texts[i:i + batch_docs], add_special_tokens=False):
            parts += [sep_b, np.asarray(enc.ids, dtype=np.int64), sep_e]
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


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
