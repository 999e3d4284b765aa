"""Text features without paying for padding: run the text tower on the real tokens only.

open_clip pads every prompt to 77 positions. In CLIP's text transformer each position attends
only to itself and earlier positions (a causal mask), and the pooled feature is read at the EOT
token (or the first token), so positions after the longest real prompt in a batch never change
the result: cutting the batch there is exact. Where that does not hold (bidirectional towers,
"last" pooling, an appended CLS token, Hugging Face text towers) we use plain ``encode_text``.
"""

from __future__ import annotations

from dataclasses import dataclass

EXACT_POOLS = ("argmax", "eos", "first")


@dataclass
class CausalTextTower:
    """The parts of an open_clip causal text tower, as plain references."""

    token_embedding: object
    positional_embedding: object
    transformer: object
    ln_final: object
    text_projection: object
    attn_mask: object
    pool_type: str
    eos_id: int | None
    pad_id: int

    def encode(self, tokens):
        """Features of a (b, 77) token batch, computed on its first L positions only."""
        import torch
        from open_clip.transformer import text_global_pool

        length = real_length(tokens, self.pad_id)
        tokens = tokens[:, :length]
        cast_dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(tokens).to(cast_dtype)
        x = x + self.positional_embedding[:length].to(cast_dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x)
        pooled = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        if self.text_projection is None:
            return pooled
        if isinstance(self.text_projection, torch.nn.Linear):
            return self.text_projection(pooled)
        return pooled @ self.text_projection


def real_length(tokens, pad_id: int = 0) -> int:
    """One past the last non-pad position of any row (at least 1)."""
    import torch

    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    return max(1, int(((tokens != pad_id) * positions).max()))


def causal_text_tower(model) -> CausalTextTower | None:
    """The model's text tower if truncating it is exact, else None (use ``encode_text``)."""
    text = getattr(model, "text", None)
    if text is not None:  # CustomTextCLIP: a TextTransformer (or an HF encoder: not handled)
        return _from_text_transformer(text)
    if not all(hasattr(model, a) for a in ("transformer", "token_embedding", "positional_embedding",
                                           "ln_final", "attn_mask", "text_pool_type")):
        return None
    if model.attn_mask is None or model.text_pool_type not in EXACT_POOLS:
        return None
    return CausalTextTower(model.token_embedding, model.positional_embedding, model.transformer,
                           model.ln_final, model.text_projection, model.attn_mask,
                           model.text_pool_type, getattr(model, "text_eos_id", None), pad_id=0)


def _from_text_transformer(text) -> CausalTextTower | None:
    from open_clip.transformer import TextTransformer

    if type(text) is not TextTransformer:
        return None
    if (text.attn_mask is None or text.cls_emb is not None or text.use_pad_mask
            or text.pool_type not in EXACT_POOLS or text.output_tokens):
        return None
    return CausalTextTower(text.token_embedding, text.positional_embedding, text.transformer,
                           text.ln_final, text.text_projection, text.attn_mask, text.pool_type,
                           text.eos_id, pad_id=text.pad_id)
