/* abort.c: the callback llama.cpp's compute thread asks between graph nodes (ggml_abort_callback),
 * set by edgees/engine/llama.py on every context. It is plain C, so asking it takes no GIL.
 *
 * data points at two int32 flags, written by Python from any thread:
 *   [0] an abort is requested (the daemon's policy wants the machine back, or a stop),
 *   [1] the work now running may be aborted (a member's evaluation; never a held-out evaluation).
 * llama_decode then returns 2 ("aborted") at the next node, and the engine raises EngineAborted.
 */
#include <stdbool.h>
#include <stdint.h>

bool edg_abort_requested(void *data);

bool edg_abort_requested(void *data) {
    const volatile int32_t *flags = (const volatile int32_t *)data;
    return flags[0] != 0 && flags[1] != 0;
}
