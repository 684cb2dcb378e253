"""Build a tiny Llama-architecture model and tokenizer, deterministically, for demos and tests.

Nothing can be downloaded here, so demos and tests need a base model the project can make
itself. The tokenizer is byte-level (every UTF-8 byte is a token, no merges), so it needs no
training; the weights come from a seeded initialization. The same seed gives byte-identical
files, so the weight hash is stable. Real model directories in Hugging Face format load the
same way.

    python -m trainers.tiny PATH [--seed N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainers.hashing import weights_hash

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


def byte_level_tokenizer():
    """A fast byte-level tokenizer: 4 special tokens, then the 256 byte symbols."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(SPECIAL)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    pad, bos, eos, unk = SPECIAL
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=pad,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
    )


def create_tiny(path: str | Path, seed: int = 0, hidden_size: int = 64) -> str:
    """Write the model and tokenizer to `path`; return the weight hash. `hidden_size` sets
    the width (a multiple of 4: the heads), so tiny bases of several sizes can be compared."""
    if hidden_size < 8 or hidden_size % 4:
        raise ValueError("hidden_size must be a multiple of 4, at least 8")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_level_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    (target / "README.md").write_text(
        "# Tiny Llama-architecture model\n\n"
        f"Random weights (seed {seed}, hidden size {hidden_size}) and a byte-level tokenizer, "
        "built by `trainers.tiny` for demos and tests. Trained on nothing; knows nothing.\n\n"
        "- License: CC0-1.0\n- Intended use: exercising the governance pipeline offline.\n"
    )
    (target / "tiny.json").write_text(json.dumps({"seed": seed, "builder": "trainers.tiny"}))
    return weights_hash(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.tiny", description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=64)
    args = parser.parse_args(argv)
    print(create_tiny(args.path, args.seed, args.hidden_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
