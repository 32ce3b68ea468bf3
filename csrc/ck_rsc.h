/*
 * ck_rsc.h - byte-level Reed-Solomon error correction, reedsolo-compatible.
 *
 * Parameters are those of reedsolo.RSCodec(nsym, nsize) defaults: field
 * polynomial 0x11d, generator alpha = 2, first consecutive root fcr = 0, so
 * the generator polynomial is g(x) = prod_{j < nsym} (x - alpha^j) and the
 * syndromes are S_j = c(alpha^j).  A codeword is written highest degree
 * first: byte t of an n-byte codeword is the coefficient of x^(n-1-t); the
 * message comes first and the nsym parity bytes, the remainder of
 * msg(x) x^nsym mod g(x), last.
 *
 * Long inputs are cut into chunks like reedsolo: encode takes nsize - nsym
 * message bytes per chunk (the last may be shorter) and appends nsym parity
 * bytes to each; decode takes nsize bytes per chunk (the last may be shorter,
 * but must be longer than nsym).
 *
 * A chunk with e byte errors and s erasures (known bad positions) is
 * corrected whenever 2e + s <= nsym.  Beyond that the decoder either reports
 * CK_EUNCORRECTABLE or, like every bounded-distance decoder, may return
 * another codeword; it never reads or writes out of bounds.
 *
 * The linear algebra runs on the GF(2^8) SIMD kernels: encoding, syndromes
 * and the Chien search are each one matmul call against precomputed tables.
 * Handles are immutable after creation and may be shared between threads.
 */
#ifndef CK_RSC_H
#define CK_RSC_H

#include "ck_common.h"

typedef struct ck_rsc ck_rsc;

/* CK_EINVAL unless 1 <= nsym < nsize <= 255. */
int ck_rsc_new(unsigned nsym, unsigned nsize, ck_rsc **out);
void ck_rsc_free(ck_rsc *rsc);

/* Sizes after encoding / decoding len input bytes, and the chunk count.
 * ck_rsc_decoded_len returns (size_t)-1 if the last chunk is too short. */
size_t ck_rsc_encoded_len(const ck_rsc *rsc, size_t len);
size_t ck_rsc_decoded_len(const ck_rsc *rsc, size_t len);
size_t ck_rsc_chunks(const ck_rsc *rsc, size_t codeword_len);

/* Encode len bytes of msg into out (ck_rsc_encoded_len(len) bytes). */
int ck_rsc_encode(const ck_rsc *rsc, const uint8_t *msg, size_t len, uint8_t *out);

/* Decode len bytes of codewords into out (ck_rsc_decoded_len(len) bytes of
 * message).  erase_pos lists positions in [0, len) known to be bad, strictly
 * ascending (CK_EINVAL otherwise).  On CK_EUNCORRECTABLE *bad_chunk (if not
 * NULL) is the index of the first chunk that could not be corrected.  The
 * number of corrected bytes is added to *corrected if not NULL. */
int ck_rsc_decode(const ck_rsc *rsc, const uint8_t *in, size_t len, const uint32_t *erase_pos,
                  size_t nerase, uint8_t *out, size_t *bad_chunk, size_t *corrected);

/* ok[c] = 1 if chunk c of the len bytes is a codeword (all syndromes zero),
 * else 0; ck_rsc_chunks(len) entries. */
int ck_rsc_check(const ck_rsc *rsc, const uint8_t *in, size_t len, uint8_t *ok);

#endif /* CK_RSC_H */
