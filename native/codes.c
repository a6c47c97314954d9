/* codes.c: placeholder until the per-type codecs land. */
#include "codes.h"
int edg_qinfo_get(int type, edg_qinfo *out) { (void)type; (void)out; return -1; }
int edg_get_code(int type, const uint8_t *tensor, int64_t i) { (void)type; (void)tensor; (void)i; return 0; }
void edg_set_code(int type, uint8_t *tensor, int64_t i, int code) { (void)type; (void)tensor; (void)i; (void)code; }
void edg_unpack(int type, const uint8_t *tensor, int64_t start, int64_t n, int8_t *out) { (void)type; (void)tensor; (void)start; (void)n; (void)out; }
void edg_pack(int type, uint8_t *tensor, int64_t start, int64_t n, const int8_t *codes) { (void)type; (void)tensor; (void)start; (void)n; (void)codes; }
