// Text to token ids and back with @huggingface/tokenizers, by runtime/tokenizer.py's rules: the
// tokenizer's special-token template applied, its saved padding and truncation not; padding to the
// longest text of a batch with the pad id, truncation to the model's maximum length, reported.

import { EdgeformerError, InputError } from './errors.js';
import { tensor } from './inputs.js';

export class TextTokenizer {
  // json: the parsed tokenizer.json; Tokenizer: @huggingface/tokenizers' Tokenizer class.
  constructor(json, Tokenizer) {
    try {
      this.tok = new Tokenizer(json, {});
    } catch (e) {
      throw new EdgeformerError(`cannot read the bundle's tokenizer.json: ${e.message}`);
    }
    this.padId = json.padding?.pad_id ?? this.firstId('<pad>', '[PAD]') ?? 0;
    this.eosId = this.firstId('<eos>', '[SEP]', '<|endoftext|>');
    this.specials = this.tok.post_processor ? this.tok.post_processor([], null, true).tokens.length : 0;
  }

  firstId(...tokens) {
    for (const t of tokens) {
      const id = this.tok.token_to_id(t);
      if (id !== undefined && id !== null) return id;
    }
    return null;
  }

  // Token ids of one text, the special-token template applied.
  encode(text) {
    return this.tok.encode(text).ids;
  }

  // Ids and token types of one text; cut to maxLength tokens (special tokens kept), as the Python
  // tokenizers library's truncation does, when `maxLength` is given.
  encodeFull(text, maxLength = null) {
    const enc = this.tok.encode(text, { return_token_type_ids: true });
    if (maxLength === null || enc.ids.length <= maxLength) return { ids: enc.ids, types: enc.token_type_ids };
    const words = this.tok.encode_text(text).slice(0, Math.max(0, maxLength - this.specials));
    const { tokens, token_type_ids } = this.tok.post_processor
      ? this.tok.post_processor(words, null, true) : { tokens: words };
    const ids = tokens.map((t) => this.tok.added_tokens_map.get(t)?.id ?? this.tok.model.tokens_to_ids.get(t)
      ?? this.tok.model.unk_token_id);
    return { ids, types: token_type_ids };
  }

  // Text of ids, special tokens skipped (Python tokenizers' decode).
  decode(ids) {
    if (!ids.length) return '';
    return this.tok.decode(ids.map(Number), { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  // Texts -> right-padded (B, T) int64 input_ids, attention_mask, token_type_ids and the indices of
  // texts cut to maxLength (refused instead when truncation is false).
  encodeBatch(texts, maxLength, truncation = true, padTo = null) {
    if (!texts.length) throw new InputError('no texts given; expected at least one');
    let encodings = texts.map((t) => this.encodeFull(t));
    const tooLong = encodings.flatMap((e, i) => (e.ids.length > maxLength ? [i] : []));
    if (tooLong.length && !truncation) {
      const i = tooLong[0];
      throw new InputError(`text ${i} is ${encodings[i].ids.length} tokens; the model accepts at most ${maxLength} `
        + '(allow truncation or shorten it)');
    }
    for (const i of tooLong) encodings[i] = this.encodeFull(texts[i], maxLength);
    const B = encodings.length, T = padTo ?? Math.max(1, ...encodings.map((e) => e.ids.length));
    const ids = tensor('int64', [B, T]), mask = tensor('int64', [B, T]), types = tensor('int64', [B, T]);
    ids.data.fill(BigInt(this.padId));
    encodings.forEach((e, b) => {
      if (e.ids.length === 0) { // an empty string with no special tokens: one pad token, masked in
        mask.data[b * T] = 1n;
        return;
      }
      e.ids.forEach((id, t) => {
        ids.data[b * T + t] = BigInt(id);
        mask.data[b * T + t] = 1n;
        types.data[b * T + t] = BigInt(e.types?.[t] ?? 0);
      });
    });
    return { input_ids: ids, attention_mask: mask, token_type_ids: types, truncated: tooLong };
  }
}
