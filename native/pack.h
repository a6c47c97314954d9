/* pack.h: a record in compact form, for the replay window that the update keeps for K steps.
 *
 * An edg_record stores 3 bytes per entry (uint16 chunk-relative position, int8 value). Packed, each
 * job's entries (ascending positions, as the update emits them) become one byte stream: per entry
 * the varint (7 bits a byte, low groups first) of z = gap << 2 | tag, where gap = position minus the
 * previous position minus 1 (the first entry's previous position is -1), and tag 0 means value +1,
 * tag 1 value -1, tag 2 any other value, in the byte after the varint. Update deltas are almost
 * always +-1 and a few hundred positions apart, so an entry takes ~2 bytes. offsets[j] is where
 * job j's stream starts; offsets[n_jobs] the total size; counts stay as they are.
 */
#ifndef EDG_PACK_H
#define EDG_PACK_H

#include <stdint.h>

#include "kernels.h"

/* Pack r (n_jobs jobs; positions ascending within each job): offsets[n_jobs + 1] filled by the
 * caller's array, *data malloc'd (caller frees), *size its length. 0, -1 on allocation failure,
 * -2 if positions do not ascend within a job. */
int edg_record_pack(const edg_record *r, int64_t n_jobs, uint64_t *offsets, uint8_t **data, int64_t *size);

/* Decode n entries of one job's stream [p, end) into pos/val; positions must stay below length.
 * 0, or -1 if the stream is malformed (too short, too long, a position out of range, a bad tag). */
int edg_record_unpack_job(const uint8_t *p, const uint8_t *end, int64_t n, int64_t length, uint16_t *pos,
                   int8_t *val);

#endif
