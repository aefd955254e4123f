/*
 * libFuzzer harness for the trace reader: arbitrary bytes as a JSON Lines
 * trace must give requests or a clean KVBM_ERR_PARSE, never a crash, a leak
 * or an out-of-bounds access. Built with -DKVBM_BUILD_FUZZ=ON and clang:
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DKVBM_BUILD_FUZZ=ON -DKVBM_WITH_CUDA=OFF
 *   build-fuzz/fuzz_trace -max_total_time=60
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *stream = fmemopen((void *)data, size, "r");
    if (stream == NULL)
        return 0;
    trace_reader_t *reader = NULL;
    if (trace_reader_from_stream(stream, &reader) == KVBM_OK) {
        for (;;) {
            trace_request_t request;
            int has_request = 0;
            if (trace_reader_next(reader, &request, &has_request) != KVBM_OK || !has_request)
                break;
            uint64_t sum = 0;
            for (size_t i = 0; i < request.count; i++)
                sum += request.hashes[i]; /* touch every id the reader claims */
            (void)sum;
        }
        trace_reader_close(reader);
    }
    fclose(stream);
    return 0;
}
