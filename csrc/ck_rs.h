/*
 * ck_rs.h - systematic Reed-Solomon erasure code over GF(2^8) for packet blocks.
 *
 * A block is k source packets and m repair packets, all of the same length;
 * packet index p names source p for p < k and repair p for k <= p < k + m.
 * Any k of the k + m packets rebuild the k sources (the code is MDS).
 *
 * The matrix (test vectors and interoperability depend on it): repair r is
 *
 *     repair[r] = sum over i < k of C(r, i) * source[i],   C(r, i) = 1 / (r ^ i)
 *
 * in GF(2^8) with polynomial 0x11d, where r and i are the packet indices taken
 * as field elements.  C is a Cauchy matrix (1 / (x_r + y_i) with the x and y
 * all distinct, because r >= k > i), and every square submatrix of a Cauchy
 * matrix is invertible: that is exactly the MDS property.  C(r, i) does not
 * depend on k or m, so a repair row is the same whatever the block shape.
 *
 * Decoding solves only for the lost sources: with e sources lost and e
 * repairs R chosen, the known sources are moved to the right-hand side and
 * the e x e Cauchy submatrix C[R][lost] is inverted in closed form, O(e^2)
 * (no elimination).
 *
 * Handles are immutable after ck_rs_new(): one handle may be used from
 * several threads at once.  Functions return CK_OK or a negative ck_status.
 */
#ifndef CK_RS_H
#define CK_RS_H

#include "ck_common.h"

typedef struct ck_rs ck_rs;

/* Create a code; CK_EINVAL unless 1 <= k, 0 <= m and k + m <= 256. */
int ck_rs_new(unsigned k, unsigned m, ck_rs **out);
void ck_rs_free(ck_rs *rs);
unsigned ck_rs_k(const ck_rs *rs);
unsigned ck_rs_m(const ck_rs *rs);
/* The coefficient C(r, i) for repair r and source i (r >= k > i). */
uint8_t ck_rs_coefficient(const ck_rs *rs, unsigned r, unsigned i);

/* Write the m repair packets of the k sources.  Each pointer addresses len
 * bytes; repairs must not overlap sources. */
int ck_rs_encode(const ck_rs *rs, const uint8_t *const *sources, uint8_t *const *repairs,
                 size_t len);

/* Rebuild lost sources.  packets has k + m entries: packets[p] is packet p,
 * or NULL if it was not received.  For every source index i < k with
 * packets[i] == NULL, out[i] must point at len writable bytes, where the
 * source is written; other out entries are not touched (may be NULL).
 * CK_ETOOFEW if fewer than k packets are present.  Outputs must not overlap
 * the packets. */
int ck_rs_decode(const ck_rs *rs, const uint8_t *const *packets, uint8_t *const *out,
                 size_t len);

/* Decode strategies, exposed for tests: both must give identical results.
 * DIRECT multiplies the inverse into the known rows first (one matmul over
 * k inputs, e^2 (k - e) scalar products); STAGED subtracts the known sources
 * from the repairs, then applies the inverse (two matmuls, no matrix product).
 * AUTO picks by estimated cost. */
enum { CK_RS_DECODE_AUTO = 0, CK_RS_DECODE_DIRECT = 1, CK_RS_DECODE_STAGED = 2 };
int ck_rs_decode_with(const ck_rs *rs, const uint8_t *const *packets, uint8_t *const *out,
                      size_t len, int strategy);

#endif /* CK_RS_H */
